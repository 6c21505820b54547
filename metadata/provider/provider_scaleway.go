package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"github.com/mobykit/mobykit/metadata/config"
)

// Scaleway reads the Scaleway instance metadata service: /conf is a shell-style KEY=VALUE
// list, and the userdata (/user_data/cloud-init) is only served to a client connecting from a
// privileged source port (below 1024), so that only root on the instance can read it.
type Scaleway struct {
	base     string
	g        getter
	userdata getter // dials from a privileged port
}

// NewScaleway returns the Scaleway provider for cfg.Endpoints.Scaleway.
func NewScaleway(cfg Config) *Scaleway {
	priv := &http.Client{
		Timeout: cfg.timeout(),
		Transport: &http.Transport{
			DialContext:       dialPrivileged,
			DisableKeepAlives: true,
		},
	}
	return &Scaleway{base: cfg.Endpoints.Scaleway, g: getter{client: cfg.client()}, userdata: getter{client: priv}}
}

// dialPrivileged connects from the first free local port in 1..1023.
func dialPrivileged(ctx context.Context, network, addr string) (net.Conn, error) {
	for port := 1; port < 1024; port++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{Port: port}}
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			return c, nil
		}
		if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL) {
			continue
		}
		return nil, fmt.Errorf("dial %s from privileged port %d: %w", addr, port, err)
	}
	return nil, fmt.Errorf("dial %s: no free local port below 1024", addr)
}

func (p *Scaleway) String() string { return "Scaleway" }

// Probe gets /conf.
func (p *Scaleway) Probe(ctx context.Context) error {
	_, err := p.g.get(ctx, p.base+"/conf")
	return err
}

// confValue returns KEY's value from a /conf document, single quotes stripped.
func confValue(conf []byte, key string) (string, bool) {
	prefix := []byte(key + "=")
	for _, line := range bytes.Split(conf, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, prefix); ok {
			return string(bytes.Trim(v, "'")), true
		}
	}
	return "", false
}

// Extract writes hostname, instance_id, instance_location, public_ip, private_ip and
// ssh/authorized_keys from /conf, and returns the cloud-init userdata.
func (p *Scaleway) Extract(ctx context.Context, dir *config.Dir) ([]byte, error) {
	conf, err := p.g.get(ctx, p.base+"/conf")
	if err != nil {
		return nil, fmt.Errorf("conf: %w", err)
	}
	hostname, ok := confValue(conf, "HOSTNAME")
	if !ok {
		return nil, errors.New("conf has no HOSTNAME")
	}
	if err := dir.WriteFile(config.HostnameFile, []byte(hostname), 0o644); err != nil {
		return nil, err
	}
	for _, kv := range []struct{ key, file string }{
		{"ID", "instance_id"},
		{"LOCATION_ZONE_ID", "instance_location"},
		{"PUBLIC_IP_ADDRESS", "public_ip"},
		{"PRIVATE_IP", "private_ip"},
	} {
		v, ok := confValue(conf, kv.key)
		if !ok {
			slog.Info("Scaleway: conf value missing", "key", kv.key)
			continue
		}
		if err := dir.WriteFile(kv.file, []byte(v), 0o644); err != nil {
			slog.Warn("Scaleway: writing metadata", "file", kv.file, "err", err)
		}
	}
	if n, ok := confValue(conf, "SSH_PUBLIC_KEYS"); ok {
		count, err := strconv.Atoi(n)
		if err != nil {
			slog.Warn("Scaleway: SSH_PUBLIC_KEYS is not a number", "value", n)
		}
		var keys bytes.Buffer
		for i := 0; i < count; i++ {
			if k, ok := confValue(conf, "SSH_PUBLIC_KEYS_"+strconv.Itoa(i)+"_KEY"); ok {
				keys.WriteString(k + "\n")
			}
		}
		if err := dir.WriteFile(config.AuthorizedKeysFile, keys.Bytes(), 0o600); err != nil {
			slog.Warn("Scaleway: writing ssh keys", "err", err)
		}
	}
	ud, err := p.userdata.get(ctx, p.base+"/user_data/cloud-init")
	if err != nil {
		slog.Info("Scaleway: no user-data", "err", err)
		return nil, nil
	}
	return ud, nil
}
