// Package qmp is a small client for the QEMU Machine Protocol: connect to a VM's QMP socket,
// negotiate capabilities, run commands (system_powerdown, query-status, quit) and skip the
// asynchronous events QEMU interleaves with replies.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Error is an error reply from QEMU.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// Client is one QMP session. Its methods may be called from several goroutines; commands are
// serialised.
type Client struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
	// Version is QEMU's version from the greeting, e.g. "7.2.22".
	Version string
}

type message struct {
	QMP *struct {
		Version struct {
			QEMU struct{ Major, Minor, Micro int } `json:"qemu"`
		} `json:"version"`
	} `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	Event  string          `json:"event"`
}

// Dial connects to the QMP unix socket at path and negotiates capabilities.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: connect %s: %w", path, err)
	}
	c := &Client{conn: conn, r: bufio.NewReader(conn)}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	m, err := c.read()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: greeting from %s: %w", path, err)
	}
	if m.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: %s did not greet with a QMP banner", path)
	}
	v := m.QMP.Version.QEMU
	c.Version = fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
	conn.SetDeadline(time.Time{})
	if _, err := c.Execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: negotiate capabilities on %s: %w", path, err)
	}
	return c, nil
}

func (c *Client) read() (*message, error) {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("decode %q: %w", line, err)
	}
	return &m, nil
}

// Execute runs command with args (nil for none) and returns the raw "return" value. Events
// that arrive before the reply are discarded.
func (c *Client) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
		defer c.conn.SetDeadline(time.Time{})
	}
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp: encode %s: %w", command, err)
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp: send %s: %w", command, err)
	}
	for {
		m, err := c.read()
		if err != nil {
			return nil, fmt.Errorf("qmp: reply to %s: %w", command, err)
		}
		if m.Event != "" {
			continue
		}
		if m.Error != nil {
			return nil, fmt.Errorf("qmp: %s: %w", command, m.Error)
		}
		if m.Return == nil {
			return nil, fmt.Errorf("qmp: reply to %s has neither return nor error", command)
		}
		return m.Return, nil
	}
}

// Status is the reply of query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

// QueryStatus returns the VM's run state.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	r, err := c.Execute(ctx, "query-status", nil)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(r, &s); err != nil {
		return s, fmt.Errorf("qmp: decode query-status: %w", err)
	}
	return s, nil
}

// Powerdown presses the ACPI power button (system_powerdown).
func (c *Client) Powerdown(ctx context.Context) error {
	_, err := c.Execute(ctx, "system_powerdown", nil)
	return err
}

// Quit makes QEMU exit at once. The connection usually drops before or right after the reply,
// which is not an error.
func (c *Client) Quit(ctx context.Context) error {
	_, err := c.Execute(ctx, "quit", nil)
	if err != nil && errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Close ends the session.
func (c *Client) Close() error { return c.conn.Close() }

// Powerdown connects to the QMP socket at path, presses the ACPI power button and disconnects.
func Powerdown(ctx context.Context, path string) error {
	c, err := Dial(ctx, path)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Powerdown(ctx)
}
