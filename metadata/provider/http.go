package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/mobykit/mobykit/metadata/config"
)

// maxBody caps a metadata response (userdata on the big clouds is at most a few tens of KiB),
// as every other source is capped: config.MaxData.
const maxBody = config.MaxData

// StatusError is returned for a non-200 answer.
type StatusError struct {
	URL  string
	Code int
}

func (e *StatusError) Error() string { return fmt.Sprintf("GET %s: status %d", e.URL, e.Code) }

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// getter does GETs with fixed headers, each bounded by the client's timeout.
type getter struct {
	client *http.Client
	header http.Header
}

func (g getter) get(ctx context.Context, url string) ([]byte, error) {
	return g.do(ctx, http.MethodGet, url, nil)
}

func (g getter) do(ctx context.Context, method, url string, extra http.Header) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	for k, v := range g.header {
		req.Header[k] = v
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err // already names method and URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, &StatusError{URL: url, Code: resp.StatusCode}
	}
	if resp.ContentLength > maxBody {
		return nil, &config.TooLargeError{Source: method + " " + url, Size: resp.ContentLength, Limit: maxBody}
	}
	return config.ReadAllMax(resp.Body, method+" "+url, maxBody)
}

// metaFile maps a metadata path to the file it is saved as.
type metaFile struct{ path, file string }

// saveAll fetches each path with get and writes it to its file; failures are collected, not
// fatal (LinuxKit logs them and carries on).
func saveAll(ctx context.Context, dir *config.Dir, get func(context.Context, string) ([]byte, error), files []metaFile) []error {
	var errs []error
	for _, f := range files {
		v, err := get(ctx, f.path)
		if err != nil {
			errs = append(errs, fmt.Errorf("get %s: %w", f.path, err))
			continue
		}
		if err := dir.WriteFile(f.file, v, 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// plainTextService is the flow DigitalOcean and Vultr share: one plain-text value per path,
// a hostname that must be there, optional values saved under their file names, ssh keys from
// public-keys, and user-data that may be absent.
type plainTextService struct {
	name     string
	get      func(context.Context, string) ([]byte, error)
	values   []metaFile
	userData func(context.Context) ([]byte, error)
}

func (s plainTextService) extract(ctx context.Context, dir *config.Dir) ([]byte, error) {
	hostname, err := s.get(ctx, "hostname")
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	if err := dir.WriteFile(config.HostnameFile, hostname, 0o644); err != nil {
		return nil, err
	}
	for _, e := range saveAll(ctx, dir, s.get, s.values) {
		slog.Info(s.name+": metadata value not saved", "err", e)
	}
	if keys, err := s.get(ctx, "public-keys"); err != nil {
		slog.Info(s.name+": no ssh keys", "err", err)
	} else if err := dir.WriteFile(config.AuthorizedKeysFile, keys, 0o600); err != nil {
		slog.Warn(s.name+": writing ssh keys", "err", err)
	}
	ud, err := s.userData(ctx)
	if err != nil {
		slog.Info(s.name+": no user-data", "err", err)
		return nil, nil
	}
	return ud, nil
}
