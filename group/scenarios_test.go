package group

import (
	"fmt"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/spi"
)

// scenarios are the rollout simulations; their transcripts are in testdata/rollout/*.golden.
func scenarios() []scenario {
	var out []scenario
	w := func(size int, version string, updating string) spi.GroupSpec {
		return spec("workers", size, nil, version, false, updating)
	}
	out = append(out,
		scenario{name: "scale-up", id: "workers", steps: 8, boot: 2,
			at:    map[int][]event{0: {commit(w(2, "v1", ""))}, 3: {setSize(5)}},
			final: "idle v1 v1 v1 v1 v1"},
		scenario{name: "scale-down", id: "workers", steps: 6, boot: 1,
			at:    map[int][]event{0: {commit(w(5, "v1", ""))}, 3: {setSize(2)}},
			final: "idle v1 v1"},
	)
	for _, surge := range []int{0, 1, 2} {
		for _, unavailable := range []int{0, 1} {
			u := fmt.Sprintf(`{"MaxSurge":%d,"MaxUnavailable":%d}`, surge, unavailable)
			out = append(out, scenario{
				name: fmt.Sprintf("roll-surge%d-unavailable%d", surge, unavailable), id: "workers", steps: 22, boot: 2,
				at:    map[int][]event{0: {commit(w(4, "v1", u))}, 3: {commit(w(4, "v2", u))}},
				final: "idle v2 v2 v2 v2",
			})
		}
	}
	out = append(out,
		scenario{name: "roll-percent", id: "workers", steps: 14, boot: 2,
			at: map[int][]event{
				0: {commit(w(6, "v1", `{"MaxSurge":"40%","MaxUnavailable":"25%"}`))},
				3: {commit(w(6, "v2", `{"MaxSurge":"40%","MaxUnavailable":"25%"}`))}},
			final: "idle v2 v2 v2 v2 v2 v2"},
		scenario{name: "roll-with-scale-up", id: "workers", steps: 16, boot: 1,
			at:    map[int][]event{0: {commit(w(3, "v1", ""))}, 2: {commit(w(5, "v2", ""))}},
			final: "idle v2 v2 v2 v2 v2"},
		scenario{name: "roll-with-scale-down", id: "workers", steps: 12, boot: 1,
			at:    map[int][]event{0: {commit(w(5, "v1", ""))}, 2: {commit(w(2, "v2", ""))}},
			final: "idle v2 v2"},
		scenario{name: "roll-count-3", id: "workers", steps: 20, boot: 1,
			at: map[int][]event{
				0: {commit(w(2, "v1", `{"Count":3}`))},
				2: {commit(w(2, "v2", `{"Count":3}`))}},
			final: "idle v2 v2"},
	)
	for _, n := range []int{3, 5} {
		var lids []string
		for i := 1; i <= n; i++ {
			lids = append(lids, fmt.Sprintf("10.0.0.%d", i))
		}
		q := func(v string) spi.GroupSpec { return spec("managers", 0, lids, v, false, "") }
		final := "idle"
		for range lids {
			final += " v2"
		}
		out = append(out, scenario{name: fmt.Sprintf("quorum-%d", n), id: "managers", steps: 4 + 3*n + 3, boot: 2,
			at: map[int][]event{0: {commit(q("v1"))}, 3: {commit(q("v2"))}}, final: final})
	}
	bad := func(onFailure string) spi.GroupSpec {
		return spec("workers", 3, nil, "v2", true, fmt.Sprintf(`{"HealthTimeout":"30s","OnFailure":%q}`, onFailure))
	}
	good := spec("workers", 3, nil, "v1", false, `{"HealthTimeout":"30s"}`)
	out = append(out,
		scenario{name: "never-healthy-pause", id: "workers", steps: 16, boot: 1,
			at:    map[int][]event{0: {commit(good)}, 2: {commit(bad("pause"))}, 10: {rollback}},
			final: "idle v1 v1 v1"},
		scenario{name: "never-healthy-rollback", id: "workers", steps: 12, boot: 1,
			at:    map[int][]event{0: {commit(good)}, 2: {commit(bad("rollback"))}},
			final: "idle v1 v1 v1"},
		scenario{name: "never-healthy-quorum-rollback", id: "managers", steps: 14, boot: 1,
			at: map[int][]event{
				0: {commit(spec("managers", 0, []string{"a", "b", "c"}, "v1", false, `{"HealthTimeout":"30s","OnFailure":"rollback"}`))},
				2: {commit(spec("managers", 0, []string{"a", "b", "c"}, "v2", true, `{"HealthTimeout":"30s","OnFailure":"rollback"}`))}},
			final: "idle v1 v1 v1"},
		scenario{name: "pause-resume", id: "workers", steps: 20, boot: 2,
			at:    map[int][]event{0: {commit(w(4, "v1", ""))}, 3: {commit(w(4, "v2", ""))}, 6: {pause}, 9: {resume}},
			final: "idle v2 v2 v2 v2"},
		scenario{name: "restart-mid-rollout", id: "workers", steps: 22, boot: 2,
			at:    map[int][]event{0: {commit(w(4, "v1", ""))}, 3: {commit(w(4, "v2", ""))}, 7: {restart}, 8: {restart}},
			final: "idle v2 v2 v2 v2"},
		scenario{name: "killed-behind-its-back", id: "workers", steps: 18, boot: 1,
			at: map[int][]event{
				0: {commit(w(4, "v1", ""))}, 3: {kill(0), kill(2)},
				6: {commit(w(4, "v2", `{"MaxSurge":1,"MaxUnavailable":1}`))}, 8: {kill(1)}},
			final: "idle v2 v2 v2 v2"},
		scenario{name: "quorum-killed-behind-its-back", id: "managers", steps: 16, boot: 1,
			at: map[int][]event{
				0: {commit(spec("managers", 0, []string{"a", "b", "c"}, "v1", false, ""))},
				3: {kill(1)},
				5: {commit(spec("managers", 0, []string{"a", "b", "c"}, "v2", false, ""))},
				7: {kill(0)}},
			final: "idle v2 v2 v2"},
		scenario{name: "quorum-self-last", id: "managers", steps: 14, boot: 1, self: "b",
			at: map[int][]event{
				0: {commit(spec("managers", 0, []string{"a", "b", "c"}, "v1", false, ""))},
				2: {commit(spec("managers", 0, []string{"a", "b", "c"}, "v2", false, ""))}},
			final: "idle v2 v1 v2"},
		// Old members whose health can no longer be judged are replaced within Cluster API's
		// cleanup bound, not all at once.
		scenario{name: "old-members-unknown", id: "workers", steps: 20, boot: 1,
			at:    map[int][]event{0: {commit(w(4, "flaky1", ""))}, 8: {commit(w(4, "v2", ""))}},
			final: "idle v2 v2 v2 v2"},
		// A new commit in the middle of a rollout: v1 and v2 members are both outdated now.
		scenario{name: "commit-during-rollout", id: "workers", steps: 18, boot: 2,
			at:    map[int][]event{0: {commit(w(4, "v1", ""))}, 3: {commit(w(4, "v2", ""))}, 6: {commit(w(4, "v3", ""))}},
			final: "idle v3 v3 v3 v3"},
		scenario{name: "adopt-bootstrap", id: "boot", steps: 3, boot: 0,
			setup: func(c *fake.Cloud) {
				c.Add("manual-1", spi.Spec{Tags: map[string]string{spi.GroupTag: "boot", spi.ConfigHashTag: spi.BootstrapHash}})
			},
			at:    map[int][]event{0: {commit(spec("boot", 2, nil, "v1", false, ""))}},
			final: "idle v1 v1"},
	)
	return out
}
