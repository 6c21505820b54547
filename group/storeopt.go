package group

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	etcd "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/mobykit/mobykit/group/store/etcdstore"
	"github.com/mobykit/mobykit/spi"
)

// EnvStorePassword names the environment variable that gives the etcd password when
// --password is not given (so that it need not appear on a command line).
const EnvStorePassword = "MOBYKIT_GROUP_STORE_PASSWORD"

// StoreOptions select where the controller keeps its groups: the file store (the default, one
// machine) or etcd (several controllers, one leader). The TLS and auth options are etcdctl's.
type StoreOptions struct {
	// Store is "" or "file" (the file store), or etcd://HOST:PORT[,HOST:PORT...].
	Store string
	// CACert, Cert and Key are PEM files: the CA that signed the etcd servers' certificates,
	// and this client's certificate and key. Any of them turns TLS on.
	CACert, Cert, Key string
	// User and Password authenticate to etcd (etcdctl's --user NAME[:PASSWORD] is accepted).
	User, Password string
	// Prefix is the key prefix of the records (default etcdstore.DefaultPrefix); Election the
	// election key (default DefaultElection, or PREFIX.leader for another prefix, so that
	// fleets on different prefixes elect their own leaders).
	Prefix, Election string
	// LeaseTTL is the leader's lease (default DefaultLeaseTTL).
	LeaseTTL time.Duration
}

// AddStoreFlags registers --store, --cacert, --cert, --key, --user, --password,
// --store-prefix and --lease-ttl on fs.
func AddStoreFlags(fs *pflag.FlagSet, o *StoreOptions) {
	fs.StringVar(&o.Store, "store", "", "group plugin: where groups are kept: file (default, $MOBYKIT_GROUP_DIR) or etcd://HOST:PORT[,HOST:PORT...] (several controllers elect a leader)")
	fs.StringVar(&o.CACert, "cacert", "", "group plugin, etcd store: verify the etcd servers with this CA bundle (PEM)")
	fs.StringVar(&o.Cert, "cert", "", "group plugin, etcd store: client certificate (PEM)")
	fs.StringVar(&o.Key, "key", "", "group plugin, etcd store: client key (PEM)")
	fs.StringVar(&o.User, "user", "", "group plugin, etcd store: user name, or USER:PASSWORD")
	fs.StringVar(&o.Password, "password", "", "group plugin, etcd store: password (else $"+EnvStorePassword+")")
	fs.StringVar(&o.Prefix, "store-prefix", "", "group plugin, etcd store: key prefix of the groups (default "+etcdstore.DefaultPrefix+")")
	fs.DurationVar(&o.LeaseTTL, "lease-ttl", 0, "group plugin, etcd store: leader lease (default 10s): a dead leader is replaced this long after its last renewal")
}

// Args renders o as flags for a detached `mobykit plugin start` (the password goes through
// $MOBYKIT_GROUP_STORE_PASSWORD instead, see Env).
func (o StoreOptions) Args() []string {
	var a []string
	add := func(name, v string) {
		if v != "" {
			a = append(a, "--"+name, v)
		}
	}
	add("store", o.Store)
	add("cacert", o.CACert)
	add("cert", o.Cert)
	add("key", o.Key)
	user, _, _ := strings.Cut(o.User, ":")
	add("user", user)
	add("store-prefix", o.Prefix)
	if o.LeaseTTL > 0 {
		add("lease-ttl", o.LeaseTTL.String())
	}
	return a
}

// Env is the environment a detached plugin needs next to Args: the password, if any.
func (o StoreOptions) Env() []string {
	if _, pw, ok := strings.Cut(o.User, ":"); ok {
		return []string{EnvStorePassword + "=" + pw}
	}
	if o.Password != "" {
		return []string{EnvStorePassword + "=" + o.Password}
	}
	return nil
}

// Etcd reports whether o selects the etcd store.
func (o StoreOptions) Etcd() bool { return strings.HasPrefix(o.Store, "etcd://") }

// Endpoints parses etcd://HOST:PORT[,HOST:PORT...] into client URLs (https when TLS options are
// given). Anything else that is not "" or "file" is an error naming the flag.
func (o StoreOptions) Endpoints() ([]string, error) {
	switch {
	case o.Store == "" || o.Store == "file":
		if o.CACert != "" || o.Cert != "" || o.Key != "" || o.User != "" || o.Password != "" {
			return nil, fmt.Errorf("--cacert, --cert, --key, --user and --password are for --store etcd://...; the file store takes none")
		}
		return nil, nil
	case !o.Etcd():
		return nil, fmt.Errorf("--store %q: want file or etcd://HOST:PORT[,HOST:PORT...]", o.Store)
	}
	scheme := "http://"
	if o.tls() {
		scheme = "https://"
	}
	var eps []string
	for _, hp := range strings.Split(strings.TrimPrefix(o.Store, "etcd://"), ",") {
		host, port, err := net.SplitHostPort(hp)
		if err != nil || host == "" || port == "" || strings.ContainsAny(hp, "/?#@") {
			return nil, fmt.Errorf("--store %q: endpoint %q: want HOST:PORT", o.Store, hp)
		}
		eps = append(eps, scheme+net.JoinHostPort(host, port))
	}
	if (o.Cert == "") != (o.Key == "") {
		return nil, fmt.Errorf("--cert and --key go together")
	}
	return eps, nil
}

func (o StoreOptions) tls() bool { return o.CACert != "" || o.Cert != "" || o.Key != "" }

// client connects to etcd as o says.
func (o StoreOptions) client(ctx context.Context) (*etcd.Client, error) {
	eps, err := o.Endpoints()
	if err != nil {
		return nil, err
	}
	cfg := etcd.Config{Endpoints: eps, DialTimeout: 10 * time.Second, Context: ctx, Logger: zap.NewNop()}
	if o.tls() {
		info := transport.TLSInfo{TrustedCAFile: o.CACert, CertFile: o.Cert, KeyFile: o.Key}
		var tc *tls.Config
		if tc, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd TLS (--cacert %q, --cert %q, --key %q): %w", o.CACert, o.Cert, o.Key, err)
		}
		cfg.TLS = tc
	}
	if o.User != "" {
		user, pw, ok := strings.Cut(o.User, ":")
		if !ok {
			pw = o.Password
			if pw == "" {
				pw = os.Getenv(EnvStorePassword)
			}
		}
		cfg.Username, cfg.Password = user, pw
	}
	cli, err := etcd.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", o.Store, err)
	}
	// Fail now, naming the endpoints, rather than in the first pass.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Get(sctx, "/mobykit/ping"); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd %s: %w", o.Store, err)
	}
	return cli, nil
}

// Service is a running group plugin: one controller on a file store, or a member of an etcd
// election.
type Service interface {
	spi.Group
	spi.RolloutControl
	Stop()
}

// OpenOptions configure OpenService.
type OpenOptions struct {
	// Dir is the file store's directory (store.DefaultDir() when ""); unused with etcd.
	Dir string
	// Store selects the store.
	Store StoreOptions
	// Address is this plugin's address, advertised while it leads (etcd store).
	Address string
	// Find maps a plugin lookup name to its address.
	Find func(lookup string) (string, error)
	// Logger (nil: slog.Default()).
	Logger *slog.Logger
}

// OpenService starts the group plugin's service: with the file store, a controller (Open); with
// etcd, a Member that campaigns and runs the controller while it leads.
func OpenService(ctx context.Context, o OpenOptions) (Service, error) {
	if !o.Store.Etcd() {
		if _, err := o.Store.Endpoints(); err != nil {
			return nil, err
		}
		return Open(ctx, o.Dir, o.Find, o.Logger)
	}
	opts, err := OptionsFromEnv()
	if err != nil {
		return nil, err
	}
	opts.Logger = o.Logger
	cli, err := o.Store.client(ctx)
	if err != nil {
		return nil, err
	}
	st, err := etcdstore.New(cli, o.Store.Prefix)
	if err != nil {
		cli.Close()
		return nil, err
	}
	// Every record must load before this controller takes part.
	if _, err := st.List(ctx); err != nil {
		cli.Close()
		return nil, err
	}
	election := o.Store.Election
	if election == "" && o.Store.Prefix != "" {
		// Controllers of another prefix (another fleet on the same etcd) hold their own election.
		election = strings.TrimSuffix(o.Store.Prefix, "/") + ".leader"
	}
	m, err := StartMember(RPCPlugins{Find: o.Find}, opts, ElectionOptions{Client: cli, Store: st,
		Election: election, LeaseTTL: o.Store.LeaseTTL, Address: o.Address})
	if err != nil {
		cli.Close()
		return nil, err
	}
	return &etcdService{Member: m, cli: cli}, nil
}

type etcdService struct {
	*Member
	cli *etcd.Client
}

func (s *etcdService) Stop() {
	s.Member.Stop()
	s.cli.Close()
}
