package flavormoby

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/etcdtest"
	"github.com/mobykit/mobykit/spi"
)

// gateway answers as etcd's JSON gateway would, with the given status and member list.
func gateway(t *testing.T, status, members string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v3/maintenance/status":
			w.Write([]byte(status))
		case "/v3/cluster/member/list":
			w.Write([]byte(members))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestEtcdHealth: a real one-member etcd (a leader, the member started and listed) is
// Healthy, which checks the check reads etcd's gateway as etcd writes it; answers in that
// format without a leader, with an alarm, from a learner, from a member listed but not
// started or not listed at all are Unknown while the instance is young and Unhealthy after
// the grace period, as is a port that answers no etcd.
func TestEtcdHealth(t *testing.T) {
	f, _ := newFlavor(t)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	f.Now = func() time.Time { return now }
	real := strings.TrimPrefix(etcdtest.Start(t).Endpoint, "http://")
	list := `{"members":[{"ID":"7","name":"a"},{"ID":"8","name":""}]}`
	noLeader := gateway(t, `{"header":{"member_id":"7"},"leader":"0"}`, list)
	inst := func(port string, started time.Time) spi.Description {
		b, _ := json.Marshal(map[string]any{"ports": map[string]string{"2379/tcp": port}, "started": started})
		return spi.Description{ID: "qemu-1", Properties: b}
	}
	young, old := now.Add(-10*time.Second), now.Add(-10*time.Minute)
	props := spi.Any(`{"spec_yaml":"x","health":{"etcd":{"port":2379},"timeout":"3s","grace":"1m"}}`)
	for _, tc := range []struct {
		name string
		inst spi.Description
		want spi.Health
	}{
		{"real member with a leader", inst(real, old), spi.Healthy},
		{"same answers from a fake", inst(gateway(t, `{"header":{"member_id":"7"},"leader":"7"}`, list), old), spi.Healthy},
		{"no leader, young", inst(noLeader, young), spi.Unknown},
		{"no leader, old", inst(noLeader, old), spi.Unhealthy},
		{"alarm", inst(gateway(t, `{"header":{"member_id":"7"},"leader":"7","errors":["NOSPACE"]}`, list), old), spi.Unhealthy},
		{"learner", inst(gateway(t, `{"header":{"member_id":"7"},"leader":"7","isLearner":true}`, list), old), spi.Unhealthy},
		{"not started", inst(gateway(t, `{"header":{"member_id":"8"},"leader":"7"}`, list), old), spi.Unhealthy},
		{"not listed", inst(gateway(t, `{"header":{"member_id":"9"},"leader":"7"}`, list), old), spi.Unhealthy},
		{"not etcd", inst(gateway(t, `<html>`, `<html>`), old), spi.Unhealthy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.Healthy(context.Background(), props, tc.inst)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Healthy = %v, want %v", got, tc.want)
			}
		})
	}
	if err := f.Validate(context.Background(), spi.Any(`{"spec_yaml":"x","health":{"etcd":{"port":0}}}`), spi.Allocation{Size: 1}); err == nil || !strings.Contains(err.Error(), "health.etcd.port") {
		t.Fatalf("port 0: %v", err)
	}
}
