// Package store keeps what a group controller must not forget across restarts: each group's
// committed spec, the spec it replaced (the target of a rollback) and the progress of its
// rolling update. Store is an interface so that an etcd-backed store can sit next to the local
// file store (FileStore, one JSON file per group, written atomically) and the in-memory one
// used by tests (Memory).
package store
