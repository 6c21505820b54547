package vfkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// State is vfkit's answer to GET /vm/state.
type State struct {
	// State is Virtualization.framework's state name, e.g. "VirtualMachineStateRunning".
	State       string `json:"state"`
	CanStart    bool   `json:"canStart"`
	CanPause    bool   `json:"canPause"`
	CanResume   bool   `json:"canResume"`
	CanStop     bool   `json:"canStop"`
	CanHardStop bool   `json:"canHardStop"`
}

// The states POST /vm/state accepts that a plugin uses.
const (
	Stop     = "Stop"     // ask the guest to power off (ACPI-like request)
	HardStop = "HardStop" // stop the VM at once
)

// MaxReply bounds what is read of a reply from the REST socket: the socket is in a state
// folder, and whatever answers there is not trusted to be vfkit.
const MaxReply = 64 << 10

// maxHeader bounds a reply's headers.
const maxHeader = 16 << 10

// client is an HTTP client over the unix socket at path. Every call is bounded by its
// context: a caller passes one with a deadline.
func client(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxResponseHeaderBytes: maxHeader,
		DisableKeepAlives:      true,
	}}
}

// do sends one request to vfkit's REST socket and returns the reply body, read up to MaxReply.
func do(ctx context.Context, socket, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://vfkit"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client(socket).Do(req)
	if err != nil {
		return nil, fmt.Errorf("vfkit REST %s %s on %s: %w", method, path, socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxReply+1))
	if err != nil {
		return nil, fmt.Errorf("vfkit REST %s %s on %s: read reply: %w", method, path, socket, err)
	}
	if len(b) > MaxReply {
		return nil, fmt.Errorf("vfkit REST %s %s on %s: reply larger than %d bytes", method, path, socket, MaxReply)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("vfkit REST %s %s on %s: %s: %q", method, path, socket, resp.Status, truncate(b, 200))
	}
	return b, nil
}

func truncate(b []byte, n int) string {
	s := strings.ToValidUTF8(string(b), "?")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// GetState asks vfkit for the VM's state (GET /vm/state).
func GetState(ctx context.Context, socket string) (State, error) {
	var st State
	b, err := do(ctx, socket, http.MethodGet, "/vm/state", nil)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("vfkit REST GET /vm/state on %s: reply %q: %w", socket, truncate(b, 200), err)
	}
	if st.State == "" || len(st.State) > 64 {
		return st, fmt.Errorf("vfkit REST GET /vm/state on %s: reply %q has no plausible state", socket, truncate(b, 200))
	}
	return st, nil
}

// SetState asks vfkit to change the VM's state (POST /vm/state {"state": state}).
func SetState(ctx context.Context, socket, state string) error {
	body, _ := json.Marshal(map[string]string{"state": state})
	_, err := do(ctx, socket, http.MethodPost, "/vm/state", body)
	return err
}
