package plan

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/mobykit/mobykit/group/types"
	"github.com/mobykit/mobykit/spi"
)

func randomInput(r *rand.Rand) Input {
	in := Input{Group: "g", Hash: "new", Phase: []spi.RolloutPhase{spi.PhaseIdle, spi.PhaseRolling, spi.PhaseRollingBack}[r.Intn(3)]}
	in.Strategy = types.Strategy{MaxSurge: r.Intn(3), MaxUnavailable: r.Intn(3), HealthyPolls: 1, HealthTimeout: time.Minute,
		OnFailure: []string{types.OnFailurePause, types.OnFailureRollback}[r.Intn(2)]}
	if in.Strategy.MaxSurge == 0 && in.Strategy.MaxUnavailable == 0 {
		in.Strategy.MaxUnavailable = 1
	}
	in.CanRollback = r.Intn(2) == 0
	quorum := r.Intn(3) == 0
	if quorum {
		in.Strategy.MaxSurge, in.Strategy.MaxUnavailable = 0, 1
		for i := 0; i < 1+r.Intn(5); i++ {
			in.LogicalIDs = append(in.LogicalIDs, spi.LogicalID(fmt.Sprintf("l%d", i)))
		}
	} else {
		in.Size = 1 + r.Intn(8)
	}
	for i := 0; i < r.Intn(12); i++ {
		m := Member{ID: spi.ID(fmt.Sprintf("i-%02d", i)), Hash: []string{"new", "old"}[r.Intn(2)], Checked: in.Phase != spi.PhaseIdle,
			Age: time.Duration(r.Intn(120)) * time.Second}
		m.Available = m.Checked && r.Intn(3) > 0
		if quorum && r.Intn(6) > 0 {
			m.LogicalID = spi.LogicalID(fmt.Sprintf("l%d", r.Intn(len(in.LogicalIDs)+1)))
		}
		in.Members = append(in.Members, m)
	}
	return in
}

// Plan must not depend on the order of the members, and must respect its bounds for any
// snapshot, not only the ones the simulations reach.
func TestPlanProperties(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 20000; i++ {
		in := randomInput(r)
		d := Plan(in)
		shuffled := in
		shuffled.Members = append([]Member(nil), in.Members...)
		r.Shuffle(len(shuffled.Members), func(a, b int) { shuffled.Members[a], shuffled.Members[b] = shuffled.Members[b], shuffled.Members[a] })
		if d2 := Plan(shuffled); !reflect.DeepEqual(d, d2) {
			t.Fatalf("order-dependent decision for %+v:\n%s\nvs\n%s", in, d, d2)
		}
		destroyed := map[spi.ID]bool{}
		availableLost := 0
		for _, x := range d.Destroy {
			if destroyed[x.ID] {
				t.Fatalf("%s destroyed twice: %+v", x.ID, in)
			}
			destroyed[x.ID] = true
			for _, m := range in.Members {
				if m.ID == x.ID && m.Available {
					availableLost++
				}
			}
		}
		total := len(in.Members) - len(d.Destroy) + len(d.Create)
		if !in.Phase.Rolling() {
			continue
		}
		if in.Quorum() {
			rolled := 0
			for _, x := range d.Destroy {
				if x.Reason == spi.ReasonRollingUpdate {
					rolled++
				}
			}
			if rolled > 1 {
				t.Fatalf("quorum rolled %d members at once: %+v", rolled, in)
			}
			continue
		}
		if total > max(in.Size+in.Strategy.MaxSurge, len(in.Members)-len(d.Destroy)) {
			t.Fatalf("%d members after the pass > size %d + surge %d: %+v\n%s", total, in.Size, in.Strategy.MaxSurge, in, d)
		}
		available := 0
		for _, m := range in.Members {
			if m.Available {
				available++
			}
		}
		minAvail := in.Size - in.Strategy.MaxUnavailable
		// Destroying available members never takes availability below the minimum, except to
		// drop new members beyond the size.
		for _, x := range d.Destroy {
			if x.Reason == spi.ReasonTerminate {
				availableLost--
			}
		}
		if availableLost > 0 && available-availableLost < minAvail {
			t.Fatalf("availability %d -> %d below %d: %+v\n%s", available, available-availableLost, minAvail, in, d)
		}
	}
}

func TestPausedDoesNothing(t *testing.T) {
	d := Plan(Input{Size: 3, Phase: spi.PhasePaused, Hash: "x"})
	if len(d.Create)+len(d.Destroy) != 0 || d.Phase != spi.PhasePaused {
		t.Fatalf("%s", d)
	}
}

func TestTimeoutRollsBackOnlyWhenPossible(t *testing.T) {
	in := Input{Size: 1, Phase: spi.PhaseRolling, Hash: "new", CanRollback: true,
		Strategy: types.Strategy{MaxSurge: 1, HealthyPolls: 1, HealthTimeout: time.Minute, OnFailure: types.OnFailureRollback},
		Members:  []Member{{ID: "a", Hash: "old", Checked: true, Available: true}, {ID: "b", Hash: "new", Checked: true, Age: 2 * time.Minute}}}
	if d := Plan(in); !d.Rollback || d.Phase != spi.PhaseRollingBack {
		t.Fatalf("want rollback: %s", d)
	}
	in.CanRollback = false
	if d := Plan(in); d.Rollback || d.Phase != spi.PhasePaused {
		t.Fatalf("want pause without a previous spec: %s", d)
	}
	in.CanRollback, in.Phase = true, spi.PhaseRollingBack
	if d := Plan(in); d.Rollback || d.Phase != spi.PhasePaused {
		t.Fatalf("a failing rollback must pause: %s", d)
	}
}

func TestScaleDownSparesSelf(t *testing.T) {
	d := Plan(Input{Size: 1, Hash: "new", Phase: spi.PhaseIdle, Members: []Member{
		{ID: "a", Hash: "old", Self: true}, {ID: "b", Hash: "old"}, {ID: "c", Hash: "new"}}})
	if len(d.Destroy) != 2 || d.Destroy[0].ID != "b" || d.Destroy[1].ID != "c" {
		t.Fatalf("want b and c destroyed, self kept: %s", d)
	}
}
