package flavormoby

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxEtcdAnswer bounds what one gateway answer costs the probe: a member list of thousands of
// members fits.
const maxEtcdAnswer = 1 << 20

// etcdPost posts body to the etcd JSON gateway at ep and decodes the answer into out.
func etcdPost(ctx context.Context, ep, path, body string, out any) error {
	u := "http://" + ep + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxEtcdAnswer+1))
	if err != nil {
		return fmt.Errorf("POST %s: %w", u, err)
	}
	if len(b) > maxEtcdAnswer {
		return fmt.Errorf("POST %s: answer larger than %d bytes", u, maxEtcdAnswer)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", u, resp.Status, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("POST %s: %w", u, err)
	}
	return nil
}

// probeEtcd is the etcd health check (EtcdCheck): the member at ep has a leader and no alarm,
// votes, and is started in the member list read through the leader.
func probeEtcd(ctx context.Context, ep string) error {
	// The gateway writes 64-bit integers as JSON strings.
	var st struct {
		Header struct {
			MemberID string `json:"member_id"`
		} `json:"header"`
		Leader    string   `json:"leader"`
		Errors    []string `json:"errors"`
		IsLearner bool     `json:"isLearner"`
	}
	if err := etcdPost(ctx, ep, "/v3/maintenance/status", "{}", &st); err != nil {
		return err
	}
	switch {
	case st.Header.MemberID == "" || st.Header.MemberID == "0":
		return fmt.Errorf("etcd at %s: status names no member", ep)
	case st.Leader == "" || st.Leader == "0":
		return fmt.Errorf("etcd member %s: no leader", st.Header.MemberID)
	case len(st.Errors) > 0:
		return fmt.Errorf("etcd member %s: %s", st.Header.MemberID, strings.Join(st.Errors, "; "))
	case st.IsLearner:
		return fmt.Errorf("etcd member %s: a learner, not voting yet", st.Header.MemberID)
	}
	var ml struct {
		Members []struct {
			ID   string `json:"ID"`
			Name string `json:"name"`
		} `json:"members"`
	}
	if err := etcdPost(ctx, ep, "/v3/cluster/member/list", `{"linearizable":true}`, &ml); err != nil {
		return err
	}
	for _, m := range ml.Members {
		if m.ID == st.Header.MemberID {
			if m.Name == "" {
				return fmt.Errorf("etcd member %s: listed but not started", m.ID)
			}
			return nil
		}
	}
	return fmt.Errorf("etcd member %s: not in the member list (%d members)", st.Header.MemberID, len(ml.Members))
}
