//go:build linux

// Command web is the member program of the local cluster example (examples/clusters/local).
// It joins the group network, then serves HTTP with the member's identity:
//
//   - the address instance-qemu gives the VM on the group network comes on the kernel command
//     line (mobykit.ip=10.99.0.10/24 mobykit.mac=52:54:00:...); web puts it on the interface
//     with that MAC;
//   - GET / answers "instance=ID version=V address=A identity=I": the instance ID (from the
//     command line), the image's VERSION (set in the spec), the group address, and the
//     identity line the flavor's userdata template wrote to /run/config/identity;
//   - GET /peers answers, one per line, the identity of every member of the group subnet
//     that answers on port 80 (itself included), found by asking each address in turn.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mobykit/mobykit/internal/guestnet"
)

func main() {
	log.SetFlags(0)
	cl, err := guestnet.ReadCmdline()
	if err != nil {
		log.Printf("web: %v", err)
	}
	addr := ""
	if g, ok, err := cl.Group(); err != nil {
		log.Printf("web: %v", err)
	} else if ok {
		addr = g.Addr.String()
		if name, err := g.Configure(); err != nil {
			log.Printf("web: %v", err)
		} else {
			log.Printf("web: group network %s on %s", g, name)
		}
	}
	identity := func() string {
		b, _ := os.ReadFile("/run/config/identity")
		return strings.TrimSpace(string(b))
	}
	self := func() string {
		return fmt.Sprintf("instance=%s version=%s address=%s identity=%s", cl[guestnet.ParamInstance], os.Getenv("VERSION"), addr, identity())
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, self())
	})
	http.HandleFunc("/peers", func(w http.ResponseWriter, r *http.Request) {
		_, ipn, err := net.ParseCIDR(addr)
		if err != nil {
			http.Error(w, "no group network", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, strings.Join(scan(r.Context(), ipn), ""))
	})
	log.Printf("web: serving %s", self())
	log.Fatal(http.ListenAndServe(":80", nil))
}

// scan asks every address of the subnet (up to 64, from .1) for its identity.
func scan(ctx context.Context, ipn *net.IPNet) []string {
	c := &http.Client{Timeout: 700 * time.Millisecond}
	var mu sync.Mutex
	var out []string
	var wg sync.WaitGroup
	base := ipn.IP.To4()
	for i := 1; i < 64; i++ {
		ip := net.IPv4(base[0], base[1], base[2], base[3]+byte(i))
		if !ipn.Contains(ip) {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ip.String()+"/", nil)
			resp, err := c.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			mu.Lock()
			out = append(out, string(b))
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Strings(out)
	return out
}
