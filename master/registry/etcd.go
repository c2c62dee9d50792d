package registry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goccy/go-json"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrFenced is the error of a write by a master that is no longer the
// elected one: its election key is gone (its lease lapsed or it
// resigned) or was created anew. The store refuses every later write
// with it too, without asking etcd: a master that sees it must stop
// acting as the active one.
var ErrFenced = errors.New("registry: fenced: this master's election key is gone or was replaced, so another master may be active")

// ErrBadEtcdStore is the error of OpenEtcd given arguments it cannot
// work with.
var ErrBadEtcdStore = errors.New("registry: bad etcd store arguments")

// EtcdTimeout bounds each Txn of a write (its read and its retries
// included) and each page of a Load: an etcd that does not answer
// within it is reported as an error rather than waited for, which also
// bounds how long Close waits for the writes in flight.
const EtcdTimeout = 5 * time.Second

// Limits of one Txn. etcd refuses a Txn of more than 128 operations in
// either branch or of more than 1.5 MiB (its defaults, --max-txn-ops and
// --max-request-bytes); a Change beyond them is committed in several
// Txns (see [Etcd]).
const (
	txnItems = 96
	txnBytes = 1 << 20
)

// loadPage is the number of keys one Load reads per request.
const loadPage = 1000

// maxBatch is the number of queued Writes one commit takes at most.
const maxBatch = 256

// maxConflicts bounds the retries of a Txn whose keys another writer
// changed between its read and its write.
const maxConflicts = 16

// Fence conditions every write of an etcd store on the election of its
// master: the write commits only if Key's create revision is Revision,
// that is while the campaign that won (concurrency.Election's Key() and
// Rev()) still holds the election. The zero Fence means unfenced: for
// tools and tests only, never for a masterd that campaigns.
type Fence struct {
	Key      string
	Revision int64
}

// Etcd is a Store in etcd, under PREFIX/registry/: nodes/NAME (a
// Record), configs/NAME (an Entry), meta/group (an Entry), meta/version
// and meta/stamp (numbers) and meta/masters (a list of URLs), all JSON
// as in the bolt store. Every write is a Txn conditioned on the fence
// and on the modification revision of each key whose stored value it
// depends on (a node's record, which is not replaced by an older one;
// the version and stamp, which only grow), retried if another writer
// changed one of those in between. A write is durable once etcd has
// acknowledged it.
//
// Concurrent Writes share commits: one goroutine commits whatever is
// queued while the previous commit was in flight, in as few Txns as
// etcd's limits allow. A Change too large for one Txn is committed in
// several, the version and stamp first; each is idempotent and fenced,
// so a master that dies in between leaves a part of the change that its
// successor reads as such (a node record or two written, not torn).
type Etcd struct {
	cli    *clientv3.Client
	root   string // PREFIX/registry/
	fence  Fence
	queue  chan *pending
	stop   chan struct{}
	ended  chan struct{}
	fenced atomic.Bool

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

var _ Store = (*Etcd)(nil)

// pending is one Write waiting for its commit.
type pending struct {
	c    Change
	done chan error
}

// OpenEtcd returns the store under prefix (e.g. "/noderpc": keys are
// then under "/noderpc/registry/") of the etcd that cli speaks to, its
// writes conditioned on fence. It does not contact etcd: the first Load
// or Write does. The caller owns cli: Close leaves it open.
func OpenEtcd(cli *clientv3.Client, prefix string, fence Fence) (*Etcd, error) {
	switch {
	case cli == nil:
		return nil, fmt.Errorf("%w: no etcd client", ErrBadEtcdStore)
	case !strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/"):
		return nil, fmt.Errorf("%w: key prefix %q: it must start with / and not end with one (e.g. /noderpc)", ErrBadEtcdStore, prefix)
	case fence.Key == "" && fence.Revision != 0, fence.Key != "" && fence.Revision <= 0:
		return nil, fmt.Errorf("%w: fence %+v: a key needs a positive revision, and the zero Fence has neither", ErrBadEtcdStore, fence)
	}
	s := &Etcd{
		cli: cli, root: prefix + "/registry/", fence: fence,
		queue: make(chan *pending), stop: make(chan struct{}), ended: make(chan struct{}),
	}
	go s.commitLoop()
	return s, nil
}

func (s *Etcd) nodeKey(name string) string   { return s.root + "nodes/" + name }
func (s *Etcd) configKey(name string) string { return s.root + "configs/" + name }
func (s *Etcd) metaKey(name string) string   { return s.root + "meta/" + name }

// Load implements Store. It reads every key of the store at one
// revision, a page at a time, so a registry of any size loads as one
// consistent snapshot.
func (s *Etcd) Load() (*Snapshot, error) {
	snap := &Snapshot{Nodes: map[string]Record{}, Configs: map[string]Entry{}}
	end := clientv3.GetPrefixRangeEnd(s.root)
	key, rev := s.root, int64(0)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		ctx, cancel := context.WithTimeout(context.Background(), EtcdTimeout)
		resp, err := s.cli.Get(ctx, key, opts...)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("registry: reading %s from etcd: %w", s.root, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if err := s.load(snap, string(kv.Key), kv.Value); err != nil {
				return nil, fmt.Errorf("registry: reading %s from etcd: %w", kv.Key, err)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return snap, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// load puts one stored key into snap. Keys it does not know are left
// alone, so that an older masterd reads the registry of a newer one.
func (s *Etcd) load(snap *Snapshot, key string, v []byte) error {
	rest := strings.TrimPrefix(key, s.root)
	if name, ok := strings.CutPrefix(rest, "nodes/"); ok {
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		snap.Nodes[name] = r
		return nil
	}
	if name, ok := strings.CutPrefix(rest, "configs/"); ok {
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		snap.Configs[name] = e
		return nil
	}
	switch rest {
	case "meta/version":
		return json.Unmarshal(v, &snap.Version)
	case "meta/stamp":
		return json.Unmarshal(v, &snap.Stamp)
	case "meta/group":
		return json.Unmarshal(v, &snap.Group)
	case "meta/masters":
		return json.Unmarshal(v, &snap.Masters)
	}
	return nil
}

// Write implements Store. It returns [ErrFenced] once the fence failed,
// this time or before.
func (s *Etcd) Write(c Change) error {
	for _, r := range c.Nodes {
		if r.Node.Name == "" {
			return errors.New("registry: a node without a name")
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()
	if s.fenced.Load() {
		return s.fencedErr()
	}
	p := &pending{c: c, done: make(chan error, 1)}
	s.queue <- p
	return <-p.done
}

// Close implements Store: it refuses new writes, waits for those in
// flight (each bounded by EtcdTimeout) and leaves the client open.
func (s *Etcd) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	close(s.stop)
	<-s.ended
	return nil
}

// commitLoop commits queued writes until Close: each commit takes every
// write queued meanwhile, so a storm of joins shares few Txns.
func (s *Etcd) commitLoop() {
	defer close(s.ended)
	for {
		var batch []*pending
		select {
		case p := <-s.queue:
			batch = append(batch, p)
		case <-s.stop:
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case p := <-s.queue:
				batch = append(batch, p)
			default:
				break more
			}
		}
		err := s.commit(batch)
		for _, p := range batch {
			p.done <- err
		}
	}
}

// item is one key a commit may put: next gives its new value from the
// stored one (nil when absent), or put false to leave it. An item that
// reads is conditioned on the stored value's modification revision.
type item struct {
	key  string
	size int // of the key and the value it may put
	read bool
	next func(stored []byte) (v []byte, put bool)
}

// commit applies the changes of batch, in their order, as few Txns.
func (s *Etcd) commit(batch []*pending) error {
	items, err := s.merge(batch)
	if err != nil {
		return fmt.Errorf("registry: writing to etcd under %s: %w", s.root, err)
	}
	for len(items) > 0 {
		n, size := 0, 0
		for n < len(items) && n < txnItems && (n == 0 || size+items[n].size <= txnBytes) {
			size += items[n].size
			n++
		}
		ctx, cancel := context.WithTimeout(context.Background(), EtcdTimeout)
		err := s.txn(ctx, items[:n])
		cancel()
		if err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// merge turns a batch of changes into the items to put, the meta keys
// first: applied in any split, every stored record's version is then at
// most the stored version.
func (s *Etcd) merge(batch []*pending) ([]item, error) {
	var version, stamp uint64
	var masters []string
	records := map[string]Record{}
	var names []string
	configs := map[string]Entry{}
	var cfgOrder []string
	for _, p := range batch {
		c := p.c
		version = max(version, c.Version)
		for _, r := range c.Nodes {
			old, ok := records[r.Node.Name]
			if !ok {
				names = append(names, r.Node.Name)
			}
			// As applied one after the other: an older record is dropped.
			if !ok || old.Version <= r.Version {
				records[r.Node.Name] = r
			}
		}
		if cc := c.Config; cc != nil {
			stamp = max(stamp, cc.Entry.Stamp)
			if _, ok := configs[cc.Node]; !ok {
				cfgOrder = append(cfgOrder, cc.Node)
			}
			configs[cc.Node] = cc.Entry
		}
		if c.Masters != nil {
			masters = c.Masters
		}
	}
	var items []item
	if version > 0 {
		items = append(items, maxItem(s.metaKey("version"), version))
	}
	if stamp > 0 {
		items = append(items, maxItem(s.metaKey("stamp"), stamp))
	}
	if masters != nil {
		it, err := wholeItem(s.metaKey("masters"), masters)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	for _, name := range cfgOrder {
		key := s.metaKey("group")
		if name != "" {
			key = s.configKey(name)
		}
		it, err := wholeItem(key, configs[name])
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	for _, name := range names {
		r := records[name]
		v, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		key := s.nodeKey(name)
		items = append(items, item{key: key, size: len(key) + len(v), read: true, next: func(stored []byte) ([]byte, bool) {
			var old Record
			// An unreadable stored record is replaced, as the bolt store does.
			if stored != nil && json.Unmarshal(stored, &old) == nil && old.Version > r.Version {
				return nil, false
			}
			return v, true
		}})
	}
	return items, nil
}

// maxItem stores n under key unless a higher number is stored.
func maxItem(key string, n uint64) item {
	return item{key: key, size: len(key) + 20, read: true, next: func(stored []byte) ([]byte, bool) {
		if stored != nil {
			old, err := strconv.ParseUint(string(stored), 10, 64)
			if err == nil && old >= n {
				return nil, false
			}
		}
		return strconv.AppendUint(nil, n, 10), true
	}}
}

// wholeItem puts v under key, whatever is stored.
func wholeItem(key string, v any) (item, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return item{}, err
	}
	return item{key: key, size: len(key) + len(data), next: func([]byte) ([]byte, bool) { return data, true }}, nil
}

// txn puts items in one Txn: it reads the keys items depend on, then
// writes on the condition that none of them changed and the fence
// holds, and starts over if one changed.
func (s *Etcd) txn(ctx context.Context, items []item) error {
	for range maxConflicts {
		var reads []clientv3.Op
		for _, it := range items {
			if it.read {
				reads = append(reads, clientv3.OpGet(it.key))
			}
		}
		var got []*clientv3.GetResponse
		if len(reads) > 0 {
			resp, err := s.cli.Txn(ctx).Then(reads...).Commit()
			if err != nil {
				return s.etcdErr(err)
			}
			for _, r := range resp.Responses {
				got = append(got, (*clientv3.GetResponse)(r.GetResponseRange()))
			}
		}
		var cmps []clientv3.Cmp
		if s.fence.Key != "" {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.fence.Key), "=", s.fence.Revision))
		}
		var puts []clientv3.Op
		for _, it := range items {
			var stored []byte
			if it.read {
				r := got[0]
				got = got[1:]
				var modRev int64
				if len(r.Kvs) > 0 {
					stored, modRev = r.Kvs[0].Value, r.Kvs[0].ModRevision
				}
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(it.key), "=", modRev))
			}
			if v, put := it.next(stored); put {
				puts = append(puts, clientv3.OpPut(it.key, string(v)))
			}
		}
		if len(puts) == 0 {
			// Nothing changes: nothing to fence either.
			return nil
		}
		var orElse []clientv3.Op
		if s.fence.Key != "" {
			orElse = append(orElse, clientv3.OpGet(s.fence.Key))
		}
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(puts...).Else(orElse...).Commit()
		if err != nil {
			return s.etcdErr(err)
		}
		if resp.Succeeded {
			return nil
		}
		if s.fence.Key != "" {
			kvs := resp.Responses[0].GetResponseRange().Kvs
			if len(kvs) == 0 || kvs[0].CreateRevision != s.fence.Revision {
				s.fenced.Store(true)
				return s.fencedErr()
			}
		}
		// Another writer changed a key read: read again.
	}
	return fmt.Errorf("registry: writing to etcd under %s: %d attempts conflicted with other writers of the same keys (is an unfenced tool writing?)", s.root, maxConflicts)
}

func (s *Etcd) fencedErr() error {
	return fmt.Errorf("%w (election key %s of revision %d)", ErrFenced, s.fence.Key, s.fence.Revision)
}

func (s *Etcd) etcdErr(err error) error {
	return fmt.Errorf("registry: writing to etcd under %s: %w", s.root, err)
}
