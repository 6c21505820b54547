package instanceaws

import (
	"encoding/json"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/mobykit/mobykit/spi"
)

// consistencyWindow is how long the plugin papers over EC2's eventual consistency: an instance
// it launched is listed even if DescribeInstances does not return it yet, and an instance it
// terminated is hidden even if DescribeInstances still shows it running (docs/infrakit/PROTOCOL.md §13.2).
const consistencyWindow = 2 * time.Minute

// window remembers, for consistencyWindow, the instances this plugin launched (until EC2 lists
// them) and destroyed (so that a listing still showing them running does not bring them back).
// Every method takes the current time, so that tests drive the clock. It is safe for
// concurrent use.
type window struct {
	mu       sync.Mutex
	launched map[spi.ID]launched  // provisioned, not yet seen listed
	gone     map[spi.ID]time.Time // destroyed
}

type launched struct {
	desc spi.Description
	at   time.Time
}

func newWindow() *window {
	return &window{launched: map[spi.ID]launched{}, gone: map[spi.ID]time.Time{}}
}

// launch records an instance EC2 accepted at now.
func (w *window) launch(d spi.Description, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.launched[d.ID] = launched{desc: d, at: now}
}

// destroy records an instance terminated at now.
func (w *window) destroy(id spi.ID, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.launched, id)
	w.gone[id] = now
}

// retag applies change to the remembered tags of a launched instance (Label, Unlabel), so that
// the window reports what EC2 will.
func (w *window) retag(id spi.ID, change func(tags map[string]string)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l, ok := w.launched[id]
	if !ok {
		return
	}
	l.desc.Tags = maps.Clone(l.desc.Tags)
	change(l.desc.Tags)
	l.desc.LogicalID = logicalID(l.desc.Tags)
	w.launched[id] = l
}

// unseen returns the instances launched within the window that match tags but were not
// listed.
func (w *window) unseen(seen map[spi.ID]bool, tags map[string]string, now time.Time) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ids []string
	for id, l := range w.launched {
		if !seen[id] && now.Sub(l.at) <= consistencyWindow && hasTags(l.desc.Tags, tags) {
			ids = append(ids, string(id))
		}
	}
	sort.Strings(ids)
	return ids
}

// reconcile applies the window to a listing: drop what was destroyed, add what was launched
// but EC2 does not list yet, and forget entries that are listed or old.
func (w *window) reconcile(result []spi.Description, seen map[spi.ID]bool, tags map[string]string, properties bool, now time.Time) []spi.Description {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, at := range w.gone {
		if now.Sub(at) > consistencyWindow {
			delete(w.gone, id)
		}
	}
	if len(w.gone) > 0 {
		kept := result[:0]
		for _, d := range result {
			if _, dead := w.gone[d.ID]; !dead {
				kept = append(kept, d)
			}
		}
		result = kept
	}
	for id, l := range w.launched {
		switch {
		case seen[id] || now.Sub(l.at) > consistencyWindow:
			delete(w.launched, id)
		case hasTags(l.desc.Tags, tags):
			d := l.desc
			d.Tags = maps.Clone(l.desc.Tags)
			if properties {
				d.Properties, _ = json.Marshal(InstanceInfo{InstanceId: string(id), State: "pending"})
			}
			result = append(result, d)
		}
	}
	sort.Slice(result, func(i, j int) bool { return result[i].ID < result[j].ID })
	return result
}
