package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/mobykit/mobykit/spi/rpc"
)

// Options is what a Factory gets.
type Options struct {
	// Kind is the registered kind being started ("group", "instance-qemu"...).
	Kind string
	// Name is the socket name the plugin serves on (the kind unless "kind:name" was given).
	Name string
	// Dir is the plugin directory holding the socket.
	Dir string
	// StateDir is a directory for the plugin's own state: $INFRAKIT_HOME/state/<Name>, else
	// ~/.infrakit/state/<Name>. It is not created.
	StateDir string
	// Logger is tagged with the plugin's name.
	Logger *slog.Logger
	// Address is where the plugin will be served: its socket path, or tcp://HOST:PORT with
	// --listen (what a group controller advertises to the others while it leads).
	Address string
}

// Factory builds the plugins served on one socket. ctx ends when the plugin is stopped:
// background work (a controller loop, VM supervision) should stop with it. The factory is
// called after the name is claimed and before the socket is created.
type Factory func(ctx context.Context, opts Options) ([]rpc.Plugin, error)

type registration struct {
	factory Factory
	socket  string
	about   string
}

// RegisterOption adjusts a registration.
type RegisterOption func(*registration)

// DefaultName sets the socket name used when "kind:name" does not give one (InfraKit's group
// kind, for example, serves on "group-stateless").
func DefaultName(name string) RegisterOption { return func(r *registration) { r.socket = name } }

// Describe sets the one-line description shown by `mobykit plugin ls --kinds`.
func Describe(text string) RegisterOption { return func(r *registration) { r.about = text } }

var (
	regMu    sync.Mutex
	registry = map[string]registration{}
)

// Register makes a plugin kind startable by name. It panics when the kind is registered twice
// or is not a valid name, since both are programming errors caught at start-up.
func Register(kind string, f Factory, opts ...RegisterOption) {
	if err := validName(kind); err != nil || f == nil {
		panic(fmt.Sprintf("launcher: invalid registration of %q: %v", kind, err))
	}
	r := registration{factory: f, socket: kind}
	for _, o := range opts {
		o(&r)
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[kind]; dup {
		panic(fmt.Sprintf("launcher: plugin kind %q registered twice", kind))
	}
	registry[kind] = r
}

// Kind describes a registered kind.
type Kind struct {
	Kind, DefaultName, Description string
}

// Kinds lists the registered kinds, sorted.
func Kinds() []Kind {
	regMu.Lock()
	defer regMu.Unlock()
	out := make([]Kind, 0, len(registry))
	for k, r := range registry {
		out = append(out, Kind{Kind: k, DefaultName: r.socket, Description: r.about})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

func lookup(kind string) (registration, error) {
	regMu.Lock()
	defer regMu.Unlock()
	r, ok := registry[kind]
	if !ok {
		names := make([]string, 0, len(registry))
		for k := range registry {
			names = append(names, k)
		}
		sort.Strings(names)
		return r, fmt.Errorf("launcher: unknown plugin kind %q (known: %s)", kind, strings.Join(names, ", "))
	}
	return r, nil
}

func validName(n string) error {
	if n == "" || n == "." || n == ".." || strings.HasPrefix(n, ".") || strings.ContainsAny(n, "/\\: \t\n") {
		return fmt.Errorf("invalid plugin name %q", n)
	}
	return nil
}

// Spec is one plugin to start: a kind and the socket name it serves on.
type Spec struct {
	Kind, Name string
	// Listen, when set (host:port), serves on TCP instead of a unix socket and records the
	// address in <dir>/<Name>.listen as tcp://host:port (discovery's TCP variant). TCP has no
	// access control: use loopback addresses.
	Listen string
}

func (s Spec) String() string {
	if s.Name == "" || s.Name == s.Kind {
		return s.Kind
	}
	return s.Kind + ":" + s.Name
}

// ParseSpec parses "kind" or "kind:name" (InfraKit's `plugin start kind:name`). The name
// defaults to the kind's registered default name.
func ParseSpec(s string) (Spec, error) {
	kind, name, _ := strings.Cut(s, ":")
	r, err := lookup(kind)
	if err != nil {
		return Spec{}, err
	}
	if name == "" {
		name = r.socket
	}
	if err := validName(name); err != nil {
		return Spec{}, fmt.Errorf("launcher: %s: %w", s, err)
	}
	return Spec{Kind: kind, Name: name}, nil
}
