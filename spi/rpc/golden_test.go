package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/mobykit/mobykit/internal/golden"
	"github.com/mobykit/mobykit/spi"
)

type rolloutGroup struct{ scriptedGroup }

func (rolloutGroup) PauseUpdate(context.Context, spi.GroupID) error    { return nil }
func (rolloutGroup) ResumeUpdate(context.Context, spi.GroupID) error   { return nil }
func (rolloutGroup) RollbackUpdate(context.Context, spi.GroupID) error { return nil }
func (rolloutGroup) UpdateStatus(context.Context, spi.GroupID) (spi.RolloutStatus, error) {
	return spi.RolloutStatus{Phase: "idle"}, nil
}

// TestInfoGolden records the full /info/api.json of the group server with mobykit's rollout
// extension: the document InfraKit's CLI `info` shows, and the wire shape of the extra methods.
func TestInfoGolden(t *testing.T) {
	h, err := NewHandler(Group(rolloutGroup{scriptedGroup{&scripted{}}}))
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/info/api.json", nil))
	var got bytes.Buffer
	if err := json.Indent(&got, w.Body.Bytes(), "", "  "); err != nil {
		t.Fatalf("info document is not JSON: %v", err)
	}
	golden.Check(t, filepath.Join("testdata", "info.group-rollout.json"), got.Bytes())
	// The rollout methods answer over JSON-RPC too.
	r := post(t, h, []byte(`{"jsonrpc":"2.0","method":"Group.UpdateStatus","params":{"Name":"group","ID":"workers"},"id":3}`))
	wantBody := `{"jsonrpc":"2.0","result":{"Name":"group","ID":"workers","Status":{"Phase":"idle","TargetHash":"","PreviousHash":"","Desired":0,"Updated":0,"Healthy":0,"Outdated":0,"Message":""}},"id":3}` + "\n"
	if r.Body.String() != wantBody {
		t.Errorf("UpdateStatus: %s", r.Body)
	}
	// Without RolloutControl the methods do not exist.
	h2, _ := NewHandler(Group(scriptedGroup{&scripted{}}))
	r = post(t, h2, []byte(`{"jsonrpc":"2.0","method":"Group.PauseUpdate","params":{"ID":"w"},"id":4}`))
	if r.Body.String() != `{"jsonrpc":"2.0","error":{"code":-32000,"message":"rpc: can't find method \"Group.PauseUpdate\"","data":null},"id":4}`+"\n" {
		t.Errorf("PauseUpdate on a plain group: %s", r.Body)
	}
}

// FuzzDecodeClientResponse: replies from a plugin are untrusted; decoding must not panic and
// must fail or fill the result.
func FuzzDecodeClientResponse(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","result":{"Type":"","ID":"i-1"},"id":1}`,
		`{"jsonrpc":"2.0","error":{"code":-32000,"message":"x","data":null},"id":1}`,
		`{"error":"raw"}`, `{"result":null}`, `{"result":[1]}`, `<html>`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r ProvisionResponse
		_ = decodeClientResponse(body, &r)
	})
}
