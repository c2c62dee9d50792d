package masterd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/goccy/go-json"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/noderpc/noderpc/master/registry"
)

// With --etcd, masterd is one candidate among several: exactly one, the
// active master, serves; the others are standbys that answer not_active
// naming it, and take over when its lease lapses. etcd elects, and
// fences the writes of a deposed master (doc/ha.md).
//
// Keys under --etcd-prefix:
//
//	/election/LEASE      a campaign (concurrency.Election): the oldest is
//	                     the active master, its value the master's URL
//	/candidates/URL      every live candidate, {url, priority}, under its
//	                     lease: the masters nodes are told of
//	/registry/...        the registry (registry.OpenEtcd)
const (
	electionDir   = "/election"
	candidatesDir = "/candidates/"
)

// candidate is the value of a candidate's key. Only masterds read it:
// it is no wire type of the nodes'.
type candidate struct {
	URL      string `json:"url"`
	Priority int    `json:"priority"`
	// created is the key's create revision: the older candidate wins a
	// tie of priorities.
	created int64
}

// Retries of a term that could not start or ended: etcd down, or the
// lease lost. The first is quick, so that a master that stepped down
// campaigns again at once once etcd answers.
const (
	retryMin = 200 * time.Millisecond
	retryMax = 2 * time.Second
)

// elector runs masterd's candidacy: one term after another, each on a
// lease of its own, for as long as masterd runs.
type elector struct {
	d        *Daemon
	cli      *clientv3.Client
	api      *api
	log      *slog.Logger
	clock    Clock
	self     string
	prefix   string
	priority int
	timings  leaseTimings

	// goneAt is when this standby saw the active master's campaign key
	// vanish, zero if it did not: the "active" log says how long the
	// takeover took from there.
	goneAt time.Time
	// shown is the active master last logged, to log a change once.
	shown string
	// stale is the lease of an earlier term that could not be revoked
	// (etcd was unreachable), revoked once etcd answers again: etcd
	// extends every lease when it restarts, and the campaign of that
	// lease would hold the election for a TTL more.
	stale clientv3.LeaseID
}

// term is one candidacy: a lease, a campaign, and, if won, a time as
// the active master, until the lease lapses or masterd stops.
type term struct {
	e      *elector
	cancel context.CancelCauseFunc

	mu sync.Mutex
	// guard is set once the lease is granted, before any keepalive.
	guard *leaseGuard
	over  bool
	ms    *members   // while active
	store *termStore // while active
}

// run campaigns until ctx ends.
func (e *elector) run(ctx context.Context) {
	wait := retryMin
	for {
		leased, err := e.term(ctx)
		if ctx.Err() != nil {
			return
		}
		e.api.setStandby("")
		if leased || wait == retryMin {
			wait = retryMin
			e.log.Warn("not a candidate; trying again", "err", err, "retry_in", wait)
		} else {
			// Once per outage at WARN, not once per retry.
			e.log.Debug("still not a candidate", "err", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// errLeaseLate deposes a master whose lease could lapse before it hears
// of it.
var errLeaseLate = errors.New("no keepalive of its etcd lease was answered in time: the lease could lapse and another master be elected")

// term runs one candidacy and returns why it ended; leased is whether
// it got as far as a lease.
func (e *elector) term(parent context.Context) (leased bool, err error) {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancelCause(parent)
	t := &term{e: e, cancel: cancel}
	var lease *clientv3.LeaseGrantResponse
	defer func() {
		// In this order: no longer active, then the lease revoked, so
		// that when this master stops or steps down the others need
		// not wait for it to lapse (while etcd is unreachable it lapses
		// on its own).
		t.end(nil)
		t.mu.Lock()
		guard := t.guard
		t.mu.Unlock()
		if guard != nil {
			guard.stop()
		}
		if lease != nil && !e.revoke(lease.ID) {
			e.stale = lease.ID
		}
		wg.Wait()
	}()

	sent := e.clock.Now()
	gctx, gcancel := context.WithTimeout(ctx, e.timings.limit())
	lease, err = e.cli.Grant(gctx, int64(e.timings.ttl/time.Second))
	gcancel()
	if err != nil {
		lease = nil
		return false, fmt.Errorf("granting a lease: %w", err)
	}
	if e.stale != clientv3.NoLease && e.revoke(e.stale) {
		e.stale = clientv3.NoLease
	}
	t.mu.Lock()
	t.guard = newLeaseGuard(e.clock, e.timings.limit(), sent, func(last time.Time) {
		t.endLate(last)
	})
	t.mu.Unlock()
	// A grant answered late (etcd just back, or slow) leaves the guard
	// little time before the first periodic keepalive: one answered now
	// gives the term a lease of a known, full life before it campaigns,
	// or it would be elected only to step down at once.
	sent = e.clock.Now()
	kctx, kcancel := context.WithTimeout(ctx, e.timings.limit())
	_, err = e.cli.KeepAliveOnce(kctx, lease.ID)
	kcancel()
	if err != nil {
		return true, fmt.Errorf("keeping the new lease alive: %w", orCause(ctx, err))
	}
	t.guard.answered(sent)
	wg.Go(func() { e.keepAlive(ctx, lease.ID, t, &wg) })

	session, err := concurrency.NewSession(e.cli, concurrency.WithLease(lease.ID), concurrency.WithContext(ctx))
	if err != nil {
		return true, fmt.Errorf("opening an etcd session: %w", err)
	}
	if err := e.putCandidate(ctx, lease.ID); err != nil {
		// A duplicate URL is retried as an outage is, logged once.
		return !errors.Is(err, errDuplicateURL), fmt.Errorf("listing this master as a candidate: %w", orCause(ctx, err))
	}
	if err := e.await(ctx); err != nil {
		return true, orCause(ctx, err)
	}
	e.log.Info("campaigning", "priority", e.priority, "url", e.self)
	election := concurrency.NewElection(session, e.prefix+electionDir)
	if err := election.Campaign(ctx, e.self); err != nil {
		return true, fmt.Errorf("campaigning: %w", orCause(ctx, err))
	}
	return true, e.serve(ctx, t, election, session)
}

// orCause is the cause of ctx's end when err is that end.
func orCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil {
			return cause
		}
	}
	return err
}

// revoke revokes a term's lease, which deletes its keys at once: its
// campaign, and its candidate key. It reports whether the lease is
// gone.
func (e *elector) revoke(id clientv3.LeaseID) bool {
	ctx, cancel := context.WithTimeout(context.Background(), e.timings.limit())
	defer cancel()
	_, err := e.cli.Revoke(ctx, id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		e.log.Debug("the lease was not revoked; it lapses on its own, or is revoked once etcd answers", "lease", fmt.Sprintf("%x", id), "err", err)
		return false
	}
	return true
}

// keepAlive renews the lease every interval, each keepalive on a
// goroutine of its own so that one lost in a stalled connection delays
// no other, and tells the guard the send time of each answered.
func (e *elector) keepAlive(ctx context.Context, id clientv3.LeaseID, t *term, wg *sync.WaitGroup) {
	tick := time.NewTicker(e.timings.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sent := e.clock.Now()
		wg.Go(func() {
			kctx, cancel := context.WithTimeout(ctx, e.timings.limit())
			defer cancel()
			_, err := e.cli.KeepAliveOnce(kctx, id)
			switch {
			case err == nil:
				t.guard.answered(sent)
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				t.end(errors.New("its etcd lease is gone (it lapsed or was revoked)"))
			}
		})
	}
}

// errDuplicateURL keeps a masterd from being a candidate while another
// live candidate advertises its URL: each would take the other's
// campaign for its own previous one and name no master, and the nodes
// sent to the URL would reach the wrong one.
var errDuplicateURL = errors.New("another live candidate advertises this URL: give each masterd an --advertise URL of its own (a restarted masterd waits here until its previous lease lapses)")

// putCandidate lists this master among the candidates, under its lease,
// unless another lease holds the key (errDuplicateURL).
func (e *elector) putCandidate(ctx context.Context, id clientv3.LeaseID) error {
	val, err := json.Marshal(candidate{URL: e.self, Priority: e.priority})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.timings.limit())
	defer cancel()
	key := e.prefix + candidatesDir + e.self
	resp, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(id))).
		Else(clientv3.OpGet(key)).Commit()
	switch {
	case err != nil:
		return err
	case resp.Succeeded:
		return nil
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 && clientv3.LeaseID(kvs[0].Lease) != id {
		return fmt.Errorf("%w (%s, lease %x)", errDuplicateURL, e.self, kvs[0].Lease)
	}
	// Its key lapsed between the compare and the read: the next term
	// puts it.
	return errors.New("the candidate key of this URL changed as it was written")
}

// view is what a candidate reads of the election at one revision.
type view struct {
	rev int64
	// leader is the URL of the active master, "" when none is.
	leader     string
	candidates []candidate
}

// look reads the election and the candidates at one revision.
func (e *elector) look(ctx context.Context) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timings.limit())
	defer cancel()
	resp, err := e.cli.Txn(ctx).Then(
		clientv3.OpGet(e.prefix+electionDir+"/", clientv3.WithFirstCreate()...),
		clientv3.OpGet(e.prefix+candidatesDir, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return view{}, fmt.Errorf("reading the election: %w", err)
	}
	v := view{rev: resp.Header.Revision}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		v.leader = string(kvs[0].Value)
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var c candidate
		if err := json.Unmarshal(kv.Value, &c); err != nil || c.URL == "" {
			e.log.Warn("an unreadable candidate key in etcd is ignored", "key", string(kv.Key), "err", err)
			continue
		}
		c.created = kv.CreateRevision
		v.candidates = append(v.candidates, c)
	}
	return v, nil
}

// best is the candidate that takes over when no master is active: the
// highest priority, then the oldest key. A view has at least the
// candidate that read it.
func (v view) best() candidate {
	if len(v.candidates) == 0 {
		return candidate{}
	}
	return slices.MinFunc(v.candidates, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), cmp.Compare(a.created, b.created))
	})
}

// masters are the URLs of the live candidates, sorted, with self.
func (v view) masters(self string) []string {
	urls := []string{self}
	for _, c := range v.candidates {
		urls = append(urls, c.URL)
	}
	slices.Sort(urls)
	return slices.Compact(urls)
}

// await returns once this master should campaign: no master is active
// and it is the best candidate. Until then it is a standby that names
// the active master, if any. Priority only chooses who takes over: a
// master never campaigns while another is active, so it never queues
// behind one and takes over ahead of a better candidate.
func (e *elector) await(ctx context.Context) error {
	var leader string
	for {
		v, err := e.look(ctx)
		if err != nil {
			return err
		}
		if leader != "" && v.leader == "" && e.goneAt.IsZero() {
			// Its deletion came on the watch of the candidates.
			e.goneAt = e.clock.Now()
		}
		leader = v.leader
		best := v.best()
		switch {
		case v.leader == e.self:
			// The campaign of an earlier term of this master, whose
			// lease was not revoked: it lapses within the TTL.
			e.showStandby("", "the campaign of this master's previous lease, until it lapses")
		case v.leader != "":
			e.showStandby(v.leader, "")
		case best.URL == e.self:
			return nil
		default:
			e.showStandby("", fmt.Sprintf("waiting for %s (priority %d) to take over", best.URL, best.Priority))
		}
		if err := e.awaitChange(ctx, v.rev); err != nil {
			return err
		}
	}
}

// showStandby makes this master a standby naming leader, and logs a
// change of it.
func (e *elector) showStandby(leader, waiting string) {
	e.api.setStandby(leader)
	shown := leader + "|" + waiting
	if shown == e.shown {
		return
	}
	e.shown = shown
	if leader != "" {
		e.log.Info("standby; the active master is "+leader, "active", leader, "priority", e.priority)
		return
	}
	e.log.Info("standby; no master is active", "waiting", waiting, "priority", e.priority)
}

// awaitChange waits for a change of the election or the candidates
// after rev.
func (e *elector) awaitChange(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(rev + 1)}
	campaigns := e.cli.Watch(wctx, e.prefix+electionDir+"/", opts...)
	candidates := e.cli.Watch(wctx, e.prefix+candidatesDir, opts...)
	var r clientv3.WatchResponse
	ok := true
	select {
	case r, ok = <-campaigns:
		for _, ev := range r.Events {
			if ev.Type == clientv3.EventTypeDelete {
				e.goneAt = e.clock.Now()
			}
		}
	case r, ok = <-candidates:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if !ok || r.Err() != nil {
		// etcd is gone or lost its leader: the active master named
		// until now may have stepped down already.
		e.showStandby("", "etcd is unreachable or has no leader")
	}
	return nil
}

// serve is the time of a won campaign as the active master, until the
// term ends; it returns why.
func (e *elector) serve(ctx context.Context, t *term, election *concurrency.Election, session *concurrency.Session) error {
	key, rev := election.Key(), election.Rev()
	fence := registry.Fence{Key: key, Revision: rev}
	inner, err := registry.OpenEtcd(e.cli, e.prefix, fence)
	if err != nil {
		return fmt.Errorf("opening the registry in etcd: %w", err)
	}
	store := &termStore{Store: inner, fenced: func(err error) {
		t.end(fmt.Errorf("a write of the registry was fenced: another master was elected (%w)", err))
	}}
	defer store.Close()
	snap, err := inner.Load()
	if err != nil {
		return fmt.Errorf("loading the registry from etcd: %w", orCause(ctx, err))
	}
	v, err := e.look(ctx)
	if err != nil {
		return orCause(ctx, err)
	}
	cfg := &e.d.cfg
	ms := takeOver(snap, store, e.clock, e.log, cfg.SessionTimeout, cfg.MaxSessionTimeout, v.masters(e.self), e.d.certs != nil)
	loaded := len(ms.nodes) // the records that passed a hello's checks; ms is not shared yet
	checks := newChecker(e.d, ms)
	defer checks.stop()
	if cfg.CheckNodes {
		ms.joined = checks.start
	}
	if !t.activate(ms, store) {
		ms.close()
		return context.Cause(ctx)
	}
	// Before the store closes and the checks stop, above: masterd stops
	// acting as active first.
	defer t.end(nil)
	attrs := []any{"url", e.self, "priority", e.priority, "nodes", loaded, "group_version", snap.Version,
		"election_key", key, "election_revision", rev}
	if !e.goneAt.IsZero() {
		attrs = append(attrs, "since_previous_gone", e.clock.Now().Sub(e.goneAt).Round(time.Millisecond))
	}
	e.log.Info("active", attrs...)
	if snap.Version == 0 {
		// A new group, or an etcd that lost its data (restored from
		// nothing, a wiped data directory): the group version starts
		// again from 0 and the nodes are learned from their hellos.
		e.log.Warn("the registry in etcd is empty: a new group, or etcd lost its data; nodes are known again as they say hello",
			"etcd_prefix", e.d.cfg.EtcdPrefix)
	}
	e.goneAt, e.shown = time.Time{}, ""

	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	mine := e.cli.Watch(wctx, key, clientv3.WithRev(rev))
	candidates := e.cli.Watch(wctx, e.prefix+candidatesDir, clientv3.WithPrefix(), clientv3.WithRev(v.rev+1))
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-session.Done():
			t.end(errors.New("its etcd session ended"))
			return context.Cause(ctx)
		case r, ok := <-mine:
			for _, ev := range r.Events {
				if ev.Type == clientv3.EventTypeDelete {
					t.end(errCampaignGone)
					return context.Cause(ctx)
				}
			}
			if !ok || r.Err() != nil {
				// etcd lost its leader or this connection, or compacted
				// the revisions the watch needs: the lease guard
				// decides while etcd is away, and the key is read
				// again before it is watched again.
				e.pause(ctx)
				if mine, err = e.watchCampaign(ctx, wctx, key, rev); err != nil {
					t.end(err)
					return context.Cause(ctx)
				}
			}
		case r, ok := <-candidates:
			if !ok || r.Err() != nil {
				e.pause(ctx)
				candidates = e.cli.Watch(wctx, e.prefix+candidatesDir, clientv3.WithPrefix())
			}
			if v, err := e.look(ctx); err == nil {
				ms.setMasters(v.masters(e.self))
			}
		}
	}
}

// pause waits a keepalive interval before a watch that ended is opened
// again, so that an etcd without a leader costs no busy loop.
func (e *elector) pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(e.timings.interval):
	}
}

// errCampaignGone deposes a master whose campaign key is gone or was
// replaced: another master may be elected.
var errCampaignGone = errors.New("its campaign key is gone from etcd")

// watchCampaign watches this master's campaign key again from now, once
// a read says it still holds the election (errCampaignGone if not). If
// etcd does not answer, the watch starts from the campaign's revision,
// to replay a deletion missed meanwhile.
func (e *elector) watchCampaign(ctx, wctx context.Context, key string, rev int64) (clientv3.WatchChan, error) {
	gctx, cancel := context.WithTimeout(ctx, e.timings.limit())
	defer cancel()
	resp, err := e.cli.Get(gctx, key)
	switch {
	case err != nil:
		return e.cli.Watch(wctx, key, clientv3.WithRev(rev)), nil
	case len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != rev:
		return nil, errCampaignGone
	}
	return e.cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)), nil
}

// activate makes masterd the active master of ms, unless the term has
// already ended.
func (t *term) activate(ms *members, store *termStore) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.over {
		return false
	}
	t.ms, t.store = ms, store
	t.e.api.setActive(ms, t.guard.holds)
	return true
}

// endLate ends the term because the lease could lapse, last being the
// send time of its last answered keepalive.
func (t *term) endLate(last time.Time) {
	t.end(fmt.Errorf("%w (last answered keepalive sent at %s, so the lease lives until at least %s)", errLeaseLate,
		last.UTC().Format(time.RFC3339Nano), last.Add(t.e.timings.ttl).UTC().Format(time.RFC3339Nano)))
}

// end ends the term for why. An active master steps down at once:
// standby answers first, then no write of its store and no timer of its
// sessions, held renewals answered not_active. why nil is the term's
// own end (masterd stops, or the term failed before it was active).
func (t *term) end(why error) {
	t.mu.Lock()
	if t.over {
		t.mu.Unlock()
		return
	}
	t.over = true
	ms, store, guard := t.ms, t.store, t.guard
	t.mu.Unlock()
	t.cancel(why)
	if ms == nil {
		return
	}
	e := t.e
	if why == nil {
		// masterd stops: shutting_down answers, as a single master's.
		ms.close()
		e.log.Info("resigning: masterd stops", "url", e.self)
		return
	}
	e.api.setStandby("")
	store.stop()
	ms.depose()
	attrs := []any{"url", e.self}
	if guard != nil {
		last := guard.lastAnswered()
		attrs = append(attrs, "last_keepalive_sent", last.UTC().Format(time.RFC3339Nano),
			"lease_lives_until_at_least", last.Add(e.timings.ttl).UTC().Format(time.RFC3339Nano))
	}
	e.log.Warn("stepped down: "+why.Error(), attrs...)
}

// termStore is the registry of one term as the active master: once the
// term ends no write goes through, and a write etcd refuses as fenced
// ends the term.
type termStore struct {
	registry.Store
	fenced func(error)

	mu      sync.Mutex
	stopped bool
}

func (s *termStore) Write(c registry.Change) error {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return errNotActive
	}
	err := s.Store.Write(c)
	if errors.Is(err, registry.ErrFenced) {
		s.fenced(err)
	}
	return err
}

// stop refuses every write from now on. A write already sent may still
// commit, but only while the lease lives: etcd checks the fence.
func (s *termStore) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
}
