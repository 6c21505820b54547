package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQEMU speaks the server side of QMP on a unix socket with scripted replies, and records
// the commands it received. (The real QEMU is exercised in vm/qemu's tests.)
func fakeQEMU(t *testing.T, replies map[string]string) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan string, 16)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}` + "\r\n"))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var req struct{ Execute string }
			json.Unmarshal(line, &req)
			got <- req.Execute
			// An event before every reply, as QEMU may send.
			c.Write([]byte(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "NIC_RX_FILTER_CHANGED", "data": {}}` + "\r\n"))
			reply, ok := replies[req.Execute]
			if !ok {
				reply = `{"return": {}}`
			}
			c.Write([]byte(reply + "\r\n"))
		}
	}()
	return path, got
}

func TestClient(t *testing.T) {
	path, got := fakeQEMU(t, map[string]string{
		"query-status": `{"return": {"status": "running", "singlestep": false, "running": true}}`,
		"bogus":        `{"error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}}`,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Version != "7.2.22" {
		t.Errorf("Version = %q", c.Version)
	}
	if cmd := <-got; cmd != "qmp_capabilities" {
		t.Fatalf("first command %q, want qmp_capabilities", cmd)
	}
	s, err := c.QueryStatus(ctx)
	if err != nil || !s.Running || s.Status != "running" {
		t.Fatalf("QueryStatus = %+v, %v", s, err)
	}
	<-got
	_, err = c.Execute(ctx, "bogus", nil)
	var qe *Error
	if err == nil || !strings.Contains(err.Error(), "CommandNotFound") || !errors.As(err, &qe) {
		t.Fatalf("bogus: err = %v", err)
	}
	<-got
	if err := c.Powerdown(ctx); err != nil {
		t.Fatal(err)
	}
	if cmd := <-got; cmd != "system_powerdown" {
		t.Fatalf("sent %q, want system_powerdown", cmd)
	}
}

func TestDialNotQMP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	l, _ := net.Listen("unix", path)
	defer l.Close()
	go func() {
		c, _ := l.Accept()
		if c != nil {
			c.Write([]byte("{}\n"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := Dial(ctx, path); err == nil {
		t.Fatal("Dial accepted a server without a QMP greeting")
	}
}
