package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/mobykit/mobykit/metadata/config"
)

// AWS IMDSv2 headers.
const (
	awsTokenHeader    = "X-aws-ec2-metadata-token"
	awsTokenTTLHeader = "X-aws-ec2-metadata-token-ttl-seconds"
	awsTokenTTL       = "21600"
)

// AWS reads the EC2 instance metadata service. It asks for an IMDSv2 session token first
// (PUT /latest/api/token) and sends it with every request; if the service answers that PUT
// with an HTTP error (an IMDSv1-only service), it falls back to plain GETs.
type AWS struct {
	base string
	g    getter

	mu    sync.Mutex
	token string
	v1    bool // the token PUT was refused: use IMDSv1
}

// NewAWS returns the AWS provider for cfg.Endpoints.AWS.
func NewAWS(cfg Config) *AWS { return &AWS{base: cfg.Endpoints.AWS, g: getter{client: cfg.client()}} }

func (p *AWS) String() string { return "AWS" }

// awsTokenAttempts is how many times the token PUT is tried when it times out, as the AWS
// SDKs' IMDS client retries it. A local VM's first connection to its metadata server starts a
// relay process on the host (QEMU's guestfwd), which can take longer than one attempt's
// timeout on a loaded host; a service that answers, even with an error, is not retried.
const awsTokenAttempts = 3

// fetchToken gets a session token, or decides on v1 if the service refuses the PUT.
func (p *AWS) fetchToken(ctx context.Context) error {
	var tok []byte
	var err error
	for attempt := 1; ; attempt++ {
		tok, err = p.g.do(ctx, http.MethodPut, p.base+"/latest/api/token", http.Header{awsTokenTTLHeader: {awsTokenTTL}})
		var ne net.Error
		if attempt == awsTokenAttempts || ctx.Err() != nil || !errors.As(err, &ne) || !ne.Timeout() {
			break
		}
		slog.Debug("AWS: IMDSv2 token request timed out; trying again", "attempt", attempt)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var se *StatusError
	switch {
	case err == nil:
		p.token, p.v1 = string(tok), false
		return nil
	case errors.As(err, &se):
		slog.Debug("AWS: IMDSv2 token refused, using IMDSv1", "status", se.Code)
		p.token, p.v1 = "", true
		return nil
	default:
		return fmt.Errorf("IMDSv2 token: %w", err)
	}
}

// get fetches a path under /latest/ with the session token, renewing it once on 401.
func (p *AWS) get(ctx context.Context, path string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		p.mu.Lock()
		var h http.Header
		if !p.v1 {
			h = http.Header{awsTokenHeader: {p.token}}
		}
		p.mu.Unlock()
		b, err := p.g.do(ctx, http.MethodGet, p.base+"/latest/"+path, h)
		var se *StatusError
		if attempt == 0 && errors.As(err, &se) && se.Code == http.StatusUnauthorized {
			if terr := p.fetchToken(ctx); terr != nil {
				return nil, terr
			}
			continue
		}
		return b, err
	}
}

func (p *AWS) meta(ctx context.Context, path string) ([]byte, error) {
	return p.get(ctx, "meta-data/"+path)
}

// Probe gets a token (or settles on v1) and then the hostname, which every instance has.
func (p *AWS) Probe(ctx context.Context) error {
	if err := p.fetchToken(ctx); err != nil {
		return err
	}
	_, err := p.meta(ctx, "hostname")
	return err
}

// Extract writes hostname, public_ipv4, local_ipv4, availability_zone, instance_type,
// instance_id, local_hostname and ssh/authorized_keys, and returns /latest/user-data.
func (p *AWS) Extract(ctx context.Context, dir *config.Dir) ([]byte, error) {
	p.mu.Lock()
	needToken := p.token == "" && !p.v1
	p.mu.Unlock()
	if needToken {
		if err := p.fetchToken(ctx); err != nil {
			return nil, err
		}
	}
	return extractEC2(ctx, "AWS", dir, p.meta, p.get, ec2Files, func(ctx context.Context) ([]byte, error) {
		return p.meta(ctx, "public-keys/0/openssh-key")
	})
}

// ec2Files are the EC2-style metadata values LinuxKit saves, and their file names.
var ec2Files = []metaFile{
	{"public-ipv4", "public_ipv4"},
	{"local-ipv4", "local_ipv4"},
	{"placement/availability-zone", "availability_zone"},
	{"instance-type", "instance_type"},
	{"instance-id", "instance_id"},
	{"local-hostname", "local_hostname"},
}

// extractEC2 is the extraction shared by the EC2-compatible services (AWS, OpenStack, Hetzner).
func extractEC2(ctx context.Context, name string, dir *config.Dir,
	meta, latest func(context.Context, string) ([]byte, error), files []metaFile,
	sshKeys func(context.Context) ([]byte, error)) ([]byte, error) {
	hostname, err := meta(ctx, "hostname")
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	if err := dir.WriteFile(config.HostnameFile, hostname, 0o644); err != nil {
		return nil, err
	}
	for _, e := range saveAll(ctx, dir, meta, files) {
		slog.Info(name+": metadata value not saved", "err", e)
	}
	if keys, err := sshKeys(ctx); err != nil {
		slog.Info(name+": no ssh keys", "err", err)
	} else if err := dir.WriteFile(config.AuthorizedKeysFile, keys, 0o600); err != nil {
		slog.Warn(name+": writing ssh keys", "err", err)
	}
	ud, err := latest(ctx, "user-data")
	if err != nil {
		// Not an error: an instance may have no userdata (404).
		slog.Info(name+": no user-data", "err", err)
		return nil, nil
	}
	return ud, nil
}
