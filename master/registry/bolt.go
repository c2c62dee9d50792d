package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/goccy/go-json"
	bolt "go.etcd.io/bbolt"
)

// FileName is the name of the store's file in masterd's --state-dir.
const FileName = "registry.db"

// Buckets and keys of the file. Values are JSON, read leniently so that
// a newer masterd reads the file of an older one.
var (
	bucketNodes   = []byte("nodes")   // node name -> Record
	bucketConfigs = []byte("configs") // node name -> Entry
	bucketMeta    = []byte("meta")
	keyVersion    = []byte("version") // uint64, big endian
	keyStamp      = []byte("stamp")   // uint64, big endian
	keyGroup      = []byte("group")   // Entry
	keyMasters    = []byte("masters") // []string
)

// ErrLocked is the error of Open when another process holds the file.
var ErrLocked = errors.New("registry: the store is held by another process (is another masterd running on this --state-dir?)")

// lockTimeout bounds the wait for the file's lock: a restarted masterd
// may find its predecessor still exiting, not more.
const lockTimeout = 5 * time.Second

// Bolt is a Store in one bbolt file. Every Write is committed with an
// fsync before it returns; concurrent Writes share commits through
// bbolt's Batch, so a storm of joins costs a few fsyncs, not one each.
type Bolt struct {
	db *bolt.DB
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens (creating if need be) the store in dir.
func OpenBolt(dir string) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry: making the state directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: opening %s: %w", path, err)
	}
	// A storm of joins waits at most this long for companions to share
	// its commit.
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketNodes, bucketConfigs, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("registry: preparing %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// Path is the file of the store.
func (s *Bolt) Path() string { return s.db.Path() }

// Load implements Store.
func (s *Bolt) Load() (*Snapshot, error) {
	snap := &Snapshot{Nodes: map[string]Record{}, Configs: map[string]Entry{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		snap.Version = getUint(meta, keyVersion)
		snap.Stamp = getUint(meta, keyStamp)
		if v := meta.Get(keyGroup); v != nil {
			if err := json.Unmarshal(v, &snap.Group); err != nil {
				return fmt.Errorf("group configuration: %w", err)
			}
		}
		if v := meta.Get(keyMasters); v != nil {
			if err := json.Unmarshal(v, &snap.Masters); err != nil {
				return fmt.Errorf("masters: %w", err)
			}
		}
		err := tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("node %q: %w", k, err)
			}
			snap.Nodes[string(k)] = r
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketConfigs).ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("configuration of node %q: %w", k, err)
			}
			snap.Configs[string(k)] = e
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("registry: reading %s: %w", s.db.Path(), err)
	}
	return snap, nil
}

// Write implements Store.
func (s *Bolt) Write(c Change) error {
	err := s.db.Batch(func(tx *bolt.Tx) error { return apply(tx, c) })
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	if err != nil {
		return fmt.Errorf("registry: writing %s: %w", s.db.Path(), err)
	}
	return nil
}

// apply puts c into tx. It may run more than once for one Write (bbolt
// retries the survivors of a failed batch), so it only puts, never adds.
func apply(tx *bolt.Tx, c Change) error {
	meta := tx.Bucket(bucketMeta)
	if err := putMax(meta, keyVersion, c.Version); err != nil {
		return err
	}
	nodes := tx.Bucket(bucketNodes)
	for _, r := range c.Nodes {
		if r.Node.Name == "" {
			return errors.New("a node without a name")
		}
		if old := nodes.Get([]byte(r.Node.Name)); old != nil {
			var stored Record
			if json.Unmarshal(old, &stored) == nil && stored.Version > r.Version {
				continue
			}
		}
		if err := putJSON(nodes, []byte(r.Node.Name), r); err != nil {
			return err
		}
	}
	if cc := c.Config; cc != nil {
		if err := putMax(meta, keyStamp, cc.Entry.Stamp); err != nil {
			return err
		}
		var err error
		if cc.Node == "" {
			err = putJSON(meta, keyGroup, cc.Entry)
		} else {
			err = putJSON(tx.Bucket(bucketConfigs), []byte(cc.Node), cc.Entry)
		}
		if err != nil {
			return err
		}
	}
	if c.Masters != nil {
		return putJSON(meta, keyMasters, c.Masters)
	}
	return nil
}

// Close implements Store.
func (s *Bolt) Close() error { return s.db.Close() }

func getUint(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// putMax stores n under k unless a higher number is stored.
func putMax(b *bolt.Bucket, k []byte, n uint64) error {
	if n <= getUint(b, k) {
		return nil
	}
	return b.Put(k, binary.BigEndian.AppendUint64(nil, n))
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}
