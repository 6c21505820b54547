package etcd_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The client side of TestEtcdCluster: a writer that writes a sequenced key every 100 ms and
// records which writes etcd acknowledged, and a prober that records when the cluster had a
// leader as a client sees it. Both reach the members through their published ports, which
// change when a member is replaced (endpoints follows them).

// clients holds one etcd client per endpoint. A client is created without blocking (no dial
// timeout), so that an endpoint whose VM is still booting costs its caller one failed request,
// not a dial under a lock.
type clients struct {
	mu sync.Mutex
	m  map[string]*clientv3.Client
}

func (cs *clients) get(ep string) (*clientv3.Client, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c, ok := cs.m[ep]; ok {
		return c, nil
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + ep}, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	if cs.m == nil {
		cs.m = map[string]*clientv3.Client{}
	}
	cs.m[ep] = c
	return c, nil
}

func (cs *clients) close() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.m {
		c.Close()
	}
	cs.m = nil
}

// endpoints is the members' current client addresses, kept current by the test.
type endpoints struct {
	mu  sync.Mutex
	eps []string
}

func (e *endpoints) set(eps []string) {
	e.mu.Lock()
	e.eps = append([]string(nil), eps...)
	e.mu.Unlock()
}

func (e *endpoints) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.eps...)
}

// writer writes key seq/N every 100 ms (N the tick) and records the writes etcd acknowledged
// and when.
type writer struct {
	eps     *endpoints
	cl      *clients
	mu      sync.Mutex
	acked   map[int]time.Time
	ticks   int
	last    string    // the endpoint that took the last write
	start   time.Time // write N is due at start + N*100ms
	stopped chan struct{}
	done    chan struct{}
}

func newWriter(eps *endpoints, cl *clients) *writer {
	return &writer{eps: eps, cl: cl, acked: map[int]time.Time{}, stopped: make(chan struct{}), done: make(chan struct{})}
}

// put writes seq/n: it tries the member that took the last write, then the others, each for
// writeAttempt, until one acknowledges or writeDeadline has passed.
func (w *writer) put(n int) bool {
	deadline := time.Now().Add(writeDeadline)
	for time.Now().Before(deadline) {
		eps := w.eps.get()
		w.mu.Lock()
		last := w.last
		w.mu.Unlock()
		sort.SliceStable(eps, func(i, j int) bool { return eps[i] == last && eps[j] != last })
		for _, ep := range eps {
			c, err := w.cl.get(ep)
			if err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), writeAttempt)
			_, err = c.Put(ctx, fmt.Sprintf("seq/%08d", n), fmt.Sprint(n))
			cancel()
			if err == nil {
				w.mu.Lock()
				w.last = ep
				w.mu.Unlock()
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// run starts one write every 100 ms, each in its own goroutine (a write under TCG takes longer
// than the period), at most maxInFlight at once: a write due while that many wait is counted
// as not acknowledged.
func (w *writer) run() {
	defer close(w.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, maxInFlight)
	start := time.Now()
	w.mu.Lock()
	w.start = start
	w.mu.Unlock()
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-w.stopped:
			return
		case <-tk.C:
		}
		n := int(time.Since(start) / (100 * time.Millisecond))
		w.mu.Lock()
		w.ticks = n + 1
		w.mu.Unlock()
		select {
		case slots <- struct{}{}:
		default:
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if w.put(n) {
				w.mu.Lock()
				w.acked[n] = time.Now()
				w.mu.Unlock()
			}
		}()
	}
}

func (w *writer) stop() { close(w.stopped); <-w.done }

// times is when the acknowledgements came.
func (w *writer) times() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]time.Time, 0, len(w.acked))
	for _, at := range w.acked {
		out = append(out, at)
	}
	return out
}

// window is the writer's record between two instants: the writes due then, how many of those
// etcd acknowledged (then or later), and the longest time between two acknowledgements.
func (w *writer) window(from, to time.Time) (due, acked int, maxGap gap) {
	w.mu.Lock()
	for n := 0; n < w.ticks; n++ {
		at := w.start.Add(time.Duration(n) * 100 * time.Millisecond)
		if at.Before(from) || at.After(to) {
			continue
		}
		due++
		if _, ok := w.acked[n]; ok {
			acked++
		}
	}
	w.mu.Unlock()
	return due, acked, longest(within(w.times(), from, to), from, to)
}

// prober asks every member, every probePeriod, for a linearizable read of one key. etcd
// answers it only through a leader that has just confirmed it still leads a quorum
// (ReadIndex), so each answer proves the cluster had a leader then; the longest time between
// two answers (from any member, or an acknowledged write) is the longest time the client saw
// the cluster without a leader. It also asks each member for its status, to count elections
// (the raft term grows by one per election, a leadership transfer included).
type prober struct {
	eps       *endpoints
	cl        *clients
	mu        sync.Mutex
	confirmed []time.Time
	terms     []termChange
	term      uint64
	probes    int
	stopped   chan struct{}
	done      chan struct{}
}

// termChange is a raft term first reported by a member, and the leader it named.
type termChange struct {
	At       time.Time
	Term     uint64
	Leader   uint64
	Endpoint string
}

// probePeriod is how often each member is probed; every statusEvery-th probe also asks for its
// status (a member that is starved of CPU under TCG must not also be flooded).
const (
	probePeriod = 100 * time.Millisecond
	statusEvery = 5
)

func newProber(eps *endpoints, cl *clients) *prober {
	return &prober{eps: eps, cl: cl, stopped: make(chan struct{}), done: make(chan struct{})}
}

func (p *prober) run() {
	defer close(p.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	busy := map[string]chan struct{}{} // one probe in flight per endpoint
	tk := time.NewTicker(probePeriod)
	defer tk.Stop()
	for {
		select {
		case <-p.stopped:
			return
		case <-tk.C:
		}
		for _, ep := range p.eps.get() {
			if ch, ok := busy[ep]; ok {
				select {
				case <-ch:
				default:
					continue
				}
			}
			ch := make(chan struct{})
			busy[ep] = ch
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(ch)
				p.probe(ep)
			}()
		}
	}
}

func (p *prober) probe(ep string) {
	c, err := p.cl.get(ep)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if _, err := c.Get(ctx, "probe"); err == nil {
		p.mu.Lock()
		p.confirmed = append(p.confirmed, time.Now())
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.probes++
	status := p.probes%statusEvery == 0
	p.mu.Unlock()
	if !status {
		return
	}
	st, err := c.Status(ctx, "http://"+ep)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st.RaftTerm > p.term {
		p.term = st.RaftTerm
		p.terms = append(p.terms, termChange{At: time.Now(), Term: st.RaftTerm, Leader: st.Leader, Endpoint: ep})
	}
}

func (p *prober) stop() { close(p.stopped); <-p.done }

// leaderless is the longest interval between from and to in which neither a probe nor a write
// proved that the cluster had a leader, and the elections (new raft terms) seen in it.
func (p *prober) leaderless(w *writer, from, to time.Time) (gap, []termChange) {
	p.mu.Lock()
	ts := append(within(p.confirmed, from, to), within(w.times(), from, to)...)
	var terms []termChange
	for _, tc := range p.terms {
		if !tc.At.Before(from) && !tc.At.After(to) {
			terms = append(terms, tc)
		}
	}
	p.mu.Unlock()
	return longest(ts, from, to), terms
}

// gap is an interval between two events.
type gap struct {
	From time.Time
	Len  time.Duration
}

func (g gap) String() string {
	return fmt.Sprintf("%v (from %s)", g.Len.Round(time.Millisecond), g.From.Format("15:04:05.000"))
}

func within(ts []time.Time, from, to time.Time) []time.Time {
	var out []time.Time
	for _, at := range ts {
		if !at.Before(from) && !at.After(to) {
			out = append(out, at)
		}
	}
	return out
}

// longest is the longest interval between from, the times ts, and to.
func longest(ts []time.Time, from, to time.Time) gap {
	var g gap
	for _, d := range gaps(ts, from, to, 0) {
		if d.Len > g.Len {
			g = d
		}
	}
	return g
}

// gaps lists the intervals between from, ts and to longer than min.
func gaps(ts []time.Time, from, to time.Time, min time.Duration) []gap {
	ts = append([]time.Time(nil), ts...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	var out []gap
	prev := from
	for _, at := range append(ts, to) {
		if d := at.Sub(prev); d > min {
			out = append(out, gap{From: prev, Len: d})
		}
		prev = at
	}
	return out
}
