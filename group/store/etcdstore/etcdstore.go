// Package etcdstore keeps group records in etcd, so that several controllers on several
// machines share them and a new leader takes over where the last one stopped.
//
// Each group is one key, <prefix><escaped group ID>, whose value is the JSON the file store
// writes. Writes can be fenced: a store made WithGuard puts and deletes only while its guard
// (for a leader, "the election key I created still exists") holds in etcd, in the same
// transaction, so a controller that lost its leadership cannot write stale state.
package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/group/types"
	"github.com/mobykit/mobykit/spi"
)

// DefaultPrefix is where the records live unless the caller says otherwise.
const DefaultPrefix = "/mobykit/groups/"

// MaxRecordSize bounds one value on read (store.MaxRecordSize, like the file store). etcd's own
// request limit (--max-request-bytes, 1.5 MiB by default) bounds what can be written.
const MaxRecordSize = store.MaxRecordSize

// pageSize is how many records one range read returns, so that a List never holds more than
// pageSize values of a hostile store in one response beyond the records themselves.
const pageSize = 64

// ErrFenced is returned by a write whose guard no longer holds: the controller is no longer the
// leader and must stop acting.
var ErrFenced = errors.New("group store: write refused: this controller no longer holds leadership")

// Store is a store.Store on etcd.
type Store struct {
	cli    *clientv3.Client
	prefix string
	guard  []clientv3.Cmp
	// fenced is called (once per refused write) when a guarded write is refused.
	fenced func()
}

var _ store.Store = (*Store)(nil)

// New returns a store under prefix (DefaultPrefix when ""); prefix must end in "/".
func New(cli *clientv3.Client, prefix string) (*Store, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("etcd group store: prefix %q must end in /", prefix)
	}
	return &Store{cli: cli, prefix: prefix}, nil
}

// WithGuard returns a store on the same keys whose every Put and Delete is a transaction that
// succeeds only if all of cmps hold; otherwise it returns ErrFenced and calls onFenced (if not
// nil).
func (s *Store) WithGuard(onFenced func(), cmps ...clientv3.Cmp) *Store {
	g := *s
	g.guard = append([]clientv3.Cmp(nil), cmps...)
	g.fenced = onFenced
	return &g
}

// Prefix is the key prefix of the records.
func (s *Store) Prefix() string { return s.prefix }

// Key is the etcd key of group id.
func (s *Store) Key(id spi.GroupID) (string, error) {
	if err := types.ValidateID(id); err != nil {
		return "", fmt.Errorf("etcd group store: %w", err)
	}
	return s.prefix + url.PathEscape(string(id)), nil
}

// List reads every record under the prefix, a page at a time, all at the revision of the first
// page. A value larger than MaxRecordSize, not a record, or whose group ID does not match its key
// is an error naming the key.
func (s *Store) List(ctx context.Context) ([]store.Record, error) {
	var out []store.Record
	key, end := s.prefix, clientv3.GetPrefixRangeEnd(s.prefix)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, key, opts...)
		if err != nil {
			return nil, fmt.Errorf("etcd group store %s: %w", s.prefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			r, err := s.decode(string(kv.Key), kv.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	sortRecords(out)
	return out, nil
}

func (s *Store) decode(key string, b []byte) (store.Record, error) {
	bad := func(format string, a ...any) (store.Record, error) {
		return store.Record{}, fmt.Errorf("etcd group store record %q: %w", key, fmt.Errorf(format, a...))
	}
	if len(b) > MaxRecordSize {
		return bad("larger than %d bytes", MaxRecordSize)
	}
	var r store.Record
	if err := json.Unmarshal(b, &r); err != nil {
		return bad("truncated or corrupt: %w", err)
	}
	want, err := s.Key(r.ID)
	if err != nil {
		return bad("%w", err)
	}
	if want != key {
		return bad("holds group %q, which belongs in %q", r.ID, want)
	}
	if r.Spec.ID != r.ID {
		return bad("holds group %q with a spec for group %q", r.ID, r.Spec.ID)
	}
	r.Source = "etcd:" + key
	return r, nil
}

// Put writes r (under the guard, if any).
func (s *Store) Put(ctx context.Context, r store.Record) error {
	key, err := s.Key(r.ID)
	if err != nil {
		return err
	}
	r.Source = ""
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("etcd group store: encode group %s: %w", r.ID, err)
	}
	b = append(b, '\n') // byte-identical to the file store's record
	if len(b) > MaxRecordSize {
		return fmt.Errorf("etcd group store: group %s: record of %d bytes is larger than %d", r.ID, len(b), MaxRecordSize)
	}
	if err := s.write(ctx, clientv3.OpPut(key, string(b))); err != nil {
		return fmt.Errorf("etcd group store: group %s (%s): %w", r.ID, key, err)
	}
	return nil
}

// Delete removes the record of id (under the guard, if any).
func (s *Store) Delete(ctx context.Context, id spi.GroupID) error {
	key, err := s.Key(id)
	if err != nil {
		return err
	}
	if err := s.write(ctx, clientv3.OpDelete(key)); err != nil {
		return fmt.Errorf("etcd group store: delete group %s (%s): %w", id, key, err)
	}
	return nil
}

func (s *Store) write(ctx context.Context, op clientv3.Op) error {
	if len(s.guard) == 0 {
		_, err := s.cli.Do(ctx, op)
		return err
	}
	resp, err := s.cli.Txn(ctx).If(s.guard...).Then(op).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		if s.fenced != nil {
			s.fenced()
		}
		return ErrFenced
	}
	return nil
}

// Check reports whether the guard still holds (ErrFenced if not), with one linearizable read:
// what a leader asks before calling a plugin that changes the world.
func (s *Store) Check(ctx context.Context) error {
	if len(s.guard) == 0 {
		return nil
	}
	resp, err := s.cli.Txn(ctx).If(s.guard...).Commit()
	if err != nil {
		return fmt.Errorf("etcd group store: leadership check: %w", err)
	}
	if !resp.Succeeded {
		if s.fenced != nil {
			s.fenced()
		}
		return ErrFenced
	}
	return nil
}

func sortRecords(rs []store.Record) {
	store.SortRecords(rs)
}
