package plan

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mobykit/mobykit/group/types"
	"github.com/mobykit/mobykit/spi"
)

// Member is one member of the group as observed this tick.
type Member struct {
	ID spi.ID
	// LogicalID is "" for members without one.
	LogicalID spi.LogicalID
	// Hash is the member's infrakit.config.hash tag.
	Hash string
	// Available: Flavor.Healthy reported Healthy on enough consecutive polls and for long
	// enough (Strategy.HealthyPolls, HealthyFor). Only meaningful when Checked.
	Available bool
	// Checked says whether health was checked this tick (the controller checks during
	// rollouts only).
	Checked bool
	// Health is the last verdict, for messages.
	Health spi.Health
	// Age is how long the controller has known this member (reset by a restart or resume).
	Age time.Duration
	// Self marks the member running this controller (INFRAKIT_GROUP_SELF_LOGICAL_ID): it is
	// never destroyed by a rollout, only drained.
	Self bool
}

// Input is a snapshot of one group.
type Input struct {
	Group      spi.GroupID
	Size       int             // scaled groups
	LogicalIDs []spi.LogicalID // quorum groups (Size ignored)
	Hash       string          // target config hash
	Strategy   types.Strategy
	Phase      spi.RolloutPhase // idle, rolling, rolling-back or paused
	// CanRollback says whether a previous spec exists to roll back to.
	CanRollback bool
	Members     []Member
}

// Quorum says whether the group is allocated by logical IDs.
func (in Input) Quorum() bool { return len(in.LogicalIDs) > 0 }

// Destroy is a member to drain and destroy.
type Destroy struct {
	ID     spi.ID
	Reason string // spi.ReasonRollingUpdate or spi.ReasonTerminate
	Why    string
}

// Create is a member to create at the target hash.
type Create struct {
	LogicalID spi.LogicalID // "" for scaled groups
}

// Decision is what to do this tick.
type Decision struct {
	Destroy []Destroy
	Create  []Create
	// DrainOnly lists members to drain but keep (the self member at the end of a rollout).
	DrainOnly []spi.ID
	// Phase is the phase after this tick; Message says why it changed or what is awaited.
	Phase   spi.RolloutPhase
	Message string
	// Rollback asks the controller to make the previous spec the target (Phase is then
	// spi.PhaseRollingBack).
	Rollback bool
	// Done says the rollout finished this tick.
	Done bool
}

// String renders the decision one line per action, for logs and golden files.
func (d Decision) String() string {
	var b strings.Builder
	for _, x := range d.Destroy {
		fmt.Fprintf(&b, "destroy %s (%s): %s\n", x.ID, x.Reason, x.Why)
	}
	if n := len(d.Create); n > 0 {
		var lids []string
		for _, c := range d.Create {
			if c.LogicalID != "" {
				lids = append(lids, string(c.LogicalID))
			}
		}
		if len(lids) > 0 {
			fmt.Fprintf(&b, "create %d [%s]\n", n, strings.Join(lids, " "))
		} else {
			fmt.Fprintf(&b, "create %d\n", n)
		}
	}
	for _, id := range d.DrainOnly {
		fmt.Fprintf(&b, "drain-only %s\n", id)
	}
	if d.Rollback {
		b.WriteString("rollback\n")
	}
	if d.Done {
		b.WriteString("done\n")
	}
	fmt.Fprintf(&b, "phase %s", d.Phase)
	if d.Message != "" {
		fmt.Fprintf(&b, ": %s", d.Message)
	}
	b.WriteString("\n")
	return b.String()
}

// Plan decides what to do for one tick. It does not depend on the order of in.Members.
func Plan(in Input) Decision {
	members := append([]Member(nil), in.Members...)
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	in.Members = members
	if in.Phase == spi.PhasePaused {
		return Decision{Phase: spi.PhasePaused}
	}
	if in.Quorum() {
		return planQuorum(in)
	}
	return planScaled(in)
}

// timedOut returns the first new member that has been unavailable past the health timeout.
func timedOut(in Input, news []Member) (Member, bool) {
	t := in.Strategy.HealthTimeout
	if t <= 0 {
		return Member{}, false
	}
	for _, m := range news {
		if m.Checked && !m.Available && m.Age > t {
			return m, true
		}
	}
	return Member{}, false
}

func failure(in Input, m Member) Decision {
	msg := fmt.Sprintf("instance %s not available after %s (health %s)", m.ID, in.Strategy.HealthTimeout, m.Health)
	if in.Phase == spi.PhaseRolling && in.Strategy.OnFailure == types.OnFailureRollback && in.CanRollback {
		return Decision{Phase: spi.PhaseRollingBack, Rollback: true, Message: msg + ": rolling back"}
	}
	return Decision{Phase: spi.PhasePaused, Message: msg + ": paused"}
}

// destroyOrder sorts members so that the ones to destroy first come first: not available,
// then by ID (byte order, as InfraKit), the self member last.
func destroyOrder(ms []Member, byAvailability bool) {
	sort.SliceStable(ms, func(i, j int) bool {
		a, b := ms[i], ms[j]
		if a.Self != b.Self {
			return b.Self
		}
		if byAvailability && a.Available != b.Available {
			return !a.Available
		}
		return a.ID < b.ID
	})
}

func planScaled(in Input) Decision {
	n := in.Size
	var olds, news []Member
	for _, m := range in.Members {
		if m.Hash == in.Hash {
			news = append(news, m)
		} else {
			olds = append(olds, m)
		}
	}
	d := Decision{Phase: in.Phase}
	total := len(in.Members)

	if !in.Phase.Rolling() {
		// Scaler only, as InfraKit's: keep the group at its size. Outdated members go first
		// when shrinking; health plays no part.
		if total < n {
			for i := 0; i < n-total; i++ {
				d.Create = append(d.Create, Create{})
			}
		} else if total > n {
			destroyOrder(olds, false)
			destroyOrder(news, false)
			var victims []Member
			for _, m := range append(append([]Member(nil), olds...), news...) {
				if !m.Self { // the self member is never a scale-down victim
					victims = append(victims, m)
				}
			}
			for _, m := range victims[:min(total-n, len(victims))] {
				d.Destroy = append(d.Destroy, Destroy{ID: m.ID, Reason: spi.ReasonTerminate, Why: fmt.Sprintf("scale down to %d", n)})
			}
		}
		return d
	}

	if m, ok := timedOut(in, news); ok {
		return failure(in, m)
	}

	available, newAvailable := 0, 0
	for _, m := range in.Members {
		if m.Available {
			available++
		}
	}
	for _, m := range news {
		if m.Available {
			newAvailable++
		}
	}
	var selfOld *Member
	var replaceable []Member
	for _, m := range olds {
		if m.Self {
			mm := m
			selfOld = &mm
			continue
		}
		replaceable = append(replaceable, m)
	}
	wantNew := n
	if selfOld != nil {
		wantNew = n - 1
	}

	if len(replaceable) == 0 && len(news) == wantNew && newAvailable == wantNew {
		d.Phase, d.Done = spi.PhaseIdle, true
		d.Message = fmt.Sprintf("%d of %d members at %s and available", newAvailable, n, short(in.Hash))
		if selfOld != nil {
			d.DrainOnly = []spi.ID{selfOld.ID}
			d.Message += fmt.Sprintf("; self member %s drained and left at its old config", selfOld.ID)
		}
		return d
	}

	minAvailable := n - in.Strategy.MaxUnavailable
	maxTotal := n + in.Strategy.MaxSurge
	budget := available - minAvailable

	// Outdated members that are unavailable anyway go first, as far as Cluster API's cleanup
	// bound allows (total - minAvailable - new unavailable): a flavor that cannot judge old
	// members must not get them all destroyed at once.
	cleanup := total - minAvailable - (len(news) - newAvailable)
	destroyOrder(replaceable, true)
	for _, m := range replaceable {
		switch {
		case !m.Available:
			if cleanup <= 0 {
				continue
			}
			cleanup--
			d.Destroy = append(d.Destroy, Destroy{ID: m.ID, Reason: spi.ReasonRollingUpdate, Why: "outdated and unavailable"})
		case budget > 0:
			budget--
			d.Destroy = append(d.Destroy, Destroy{ID: m.ID, Reason: spi.ReasonRollingUpdate, Why: fmt.Sprintf("outdated (available %d, minimum %d)", available, minAvailable)})
		}
	}
	// Too many new members (the size went down): drop the extra ones.
	if extra := len(news) - wantNew; extra > 0 {
		destroyOrder(news, true)
		for _, m := range news[:extra] {
			d.Destroy = append(d.Destroy, Destroy{ID: m.ID, Reason: spi.ReasonTerminate, Why: fmt.Sprintf("scale down to %d", n)})
		}
	}
	after := total - len(d.Destroy)
	create := min(wantNew-len(news), maxTotal-after)
	for i := 0; i < create; i++ {
		d.Create = append(d.Create, Create{})
	}
	d.Message = fmt.Sprintf("%d/%d new available, %d outdated, %d available (min %d, max total %d)",
		newAvailable, n, len(replaceable), available, minAvailable, maxTotal)
	return d
}

func planQuorum(in Input) Decision {
	want := map[spi.LogicalID]bool{}
	for _, l := range in.LogicalIDs {
		want[l] = true
	}
	d := Decision{Phase: in.Phase}
	byLID := map[spi.LogicalID][]Member{}
	for _, m := range in.Members {
		switch {
		case m.LogicalID == "":
			// InfraKit ignores members without a logical ID: neither counted nor destroyed.
		case !want[m.LogicalID]:
			if !m.Self {
				d.Destroy = append(d.Destroy, Destroy{ID: m.ID, Reason: spi.ReasonTerminate, Why: fmt.Sprintf("logical ID %s not in the group", m.LogicalID)})
			}
		default:
			byLID[m.LogicalID] = append(byLID[m.LogicalID], m)
		}
	}
	// One member per logical ID: keep the best, destroy duplicates.
	members := map[spi.LogicalID]Member{}
	for _, l := range in.LogicalIDs {
		ms := byLID[l]
		if len(ms) == 0 {
			d.Create = append(d.Create, Create{LogicalID: l})
			continue
		}
		sort.SliceStable(ms, func(i, j int) bool {
			a, b := ms[i], ms[j]
			if (a.Hash == in.Hash) != (b.Hash == in.Hash) {
				return a.Hash == in.Hash
			}
			if a.Available != b.Available {
				return a.Available
			}
			return a.ID < b.ID
		})
		members[l] = ms[0]
		for _, m := range ms[1:] {
			if !m.Self {
				d.Destroy = append(d.Destroy, Destroy{ID: m.ID, Reason: spi.ReasonTerminate, Why: fmt.Sprintf("duplicate of logical ID %s", l)})
			}
		}
	}
	if !in.Phase.Rolling() {
		return d
	}
	var news []Member
	for _, m := range members {
		if m.Hash == in.Hash {
			news = append(news, m)
		}
	}
	sort.Slice(news, func(i, j int) bool { return news[i].ID < news[j].ID })
	if m, ok := timedOut(in, news); ok {
		f := failure(in, m)
		return f
	}
	// A member may go only when every other logical ID is served by an available member, so
	// the quorum never loses two members at once. An outdated member that is itself
	// unavailable goes first: replacing it loses nothing.
	var waiting []string
	var old []Member
	var selfOld *Member
	unavailable := map[spi.LogicalID]bool{}
	for _, l := range in.LogicalIDs {
		m, ok := members[l]
		switch {
		case !ok:
			waiting = append(waiting, string(l)+" missing")
			unavailable[l] = true
		case !m.Available:
			waiting = append(waiting, fmt.Sprintf("%s %s", l, m.Health))
			unavailable[l] = true
		}
		if ok && m.Hash != in.Hash {
			if m.Self {
				mm := m
				selfOld = &mm
			} else {
				old = append(old, m)
			}
		}
	}
	if len(old) == 0 && len(waiting) == 0 && len(d.Destroy) == 0 {
		d.Phase, d.Done = spi.PhaseIdle, true
		d.Message = fmt.Sprintf("%d logical IDs at %s and available", len(in.LogicalIDs), short(in.Hash))
		if selfOld != nil {
			d.DrainOnly = []spi.ID{selfOld.ID}
			d.Message += fmt.Sprintf("; self member %s drained and left at its old config", selfOld.ID)
		}
		return d
	}
	sort.SliceStable(old, func(i, j int) bool { return !old[i].Available && old[j].Available })
	if len(old) > 0 && len(d.Destroy) == 0 && len(d.Create) == 0 {
		next := old[0]
		others := len(unavailable)
		if unavailable[next.LogicalID] {
			others--
		}
		if others == 0 {
			d.Destroy = append(d.Destroy, Destroy{ID: next.ID, Reason: spi.ReasonRollingUpdate, Why: fmt.Sprintf("outdated member of %s; all others available", next.LogicalID)})
			d.Create = append(d.Create, Create{LogicalID: next.LogicalID})
			d.Message = fmt.Sprintf("replacing %s, %d outdated", next.LogicalID, len(old))
			return d
		}
	}
	d.Message = fmt.Sprintf("%d outdated; waiting for %s", len(old), strings.Join(waiting, ", "))
	return d
}

func short(h string) string {
	if len(h) > 8 {
		return h[:8]
	}
	return h
}
