// Package registry keeps what masterd must not forget across restarts:
// the nodes it knows with the facts of their last hello, the group-wide
// and per-node configuration, the membership version and the list of
// masters. A Store is written only by joins, expiries, leaves and
// configuration changes, each durably before it is acknowledged;
// renewals never touch it.
//
// The interface is small on purpose: every write goes through Write, so
// that a store replicated by consensus can condition that one method on
// its election (see doc/membership.md).
package registry

import (
	"errors"

	"github.com/noderpc/noderpc/rpc"
)

// ErrClosed is the error of a Store used after Close.
var ErrClosed = errors.New("registry: store closed")

// Store is the durable side of masterd's registry.
type Store interface {
	// Load returns everything the store holds.
	Load() (*Snapshot, error)
	// Write applies c atomically and durably, and returns once it is
	// committed. Concurrent writes may share one commit.
	Write(c Change) error
	// Close releases the store; writes in flight finish first.
	Close() error
}

// Entry is one configuration: its keys and the stamp of its last change.
// Stamps come from one counter across every entry, so a node's
// effective configuration version (the higher of its own stamp and the
// group's) moves whenever either changes.
type Entry struct {
	Keys  rpc.Config `json:"keys"`
	Stamp uint64     `json:"stamp"`
}

// Record is one node as stored: the node and the group version of the
// change that wrote it. A write of an older record than the stored one
// is dropped, so that two changes of one node committed out of order
// leave the later one.
type Record struct {
	Node    rpc.Node `json:"node"`
	Version uint64   `json:"version"`
}

// Snapshot is the whole content of a store.
type Snapshot struct {
	// Version is the highest group version written.
	Version uint64
	// Stamp is the highest configuration stamp written.
	Stamp uint64
	// Nodes are by name.
	Nodes map[string]Record
	// Group is the group-wide configuration; Configs the nodes' own, by
	// node name, known as a member or not.
	Group   Entry
	Configs map[string]Entry
	// Masters are the URLs of the group's masters.
	Masters []string
}

// Change is one durable change. Zero fields change nothing.
type Change struct {
	// Version is the group version after the change; the store keeps
	// the highest it was given.
	Version uint64
	// Nodes are records to put whole (each unless an equal or newer one
	// is stored).
	Nodes []Record
	// Config, when set, replaces one configuration.
	Config *ConfigChange
	// Masters, when not nil, replaces the list of masters.
	Masters []string
}

// ConfigChange replaces the group-wide configuration (Node "") or one
// node's own.
type ConfigChange struct {
	Node  string
	Entry Entry
}
