package store

import (
	"container/list"
	"slices"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// lru is a bounded map that forgets the least recently used entry.
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // of entry[K, V], most recent first
	byKey map[K]*list.Element
}

type entry[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), byKey: map[K]*list.Element{}}
}

// get is nil-safe: a nil lru remembers nothing.
func (l *lru[K, V]) get(k K) (V, bool) {
	var zero V
	if l == nil {
		return zero, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.byKey[k]
	if !ok {
		return zero, false
	}
	l.order.MoveToFront(e)
	return e.Value.(entry[K, V]).val, true
}

func (l *lru[K, V]) put(k K, v V) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.byKey[k]; ok {
		e.Value = entry[K, V]{k, v}
		l.order.MoveToFront(e)
		return
	}
	l.byKey[k] = l.order.PushFront(entry[K, V]{k, v})
	if l.order.Len() > l.max {
		oldest := l.order.Back()
		l.order.Remove(oldest)
		delete(l.byKey, oldest.Value.(entry[K, V]).key)
	}
}

func (l *lru[K, V]) drop(k K) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.byKey[k]; ok {
		l.order.Remove(e)
		delete(l.byKey, k)
	}
}

// recentTickets remembers, for the most recently written tickets, the state
// this process last wrote (without Logs and Outbox), so that the next write
// to a ticket in an active conversation need not read it back first.
//
// It is used only when the store is serialized (the embedded server, which
// no other process writes), and only under the ticket's lock: then what it
// holds is what the database holds. Every other write to a ticket document
// drops the entry. Entries are deep copies, so no caller ever shares memory
// with it.
type recentTickets struct{ l *lru[bson.ObjectID, *Ticket] }

func newRecentTickets(max int) *recentTickets {
	return &recentTickets{l: newLRU[bson.ObjectID, *Ticket](max)}
}

// get returns a copy of the remembered ticket, or nil.
func (r *recentTickets) get(id bson.ObjectID) *Ticket {
	if r == nil {
		return nil
	}
	t, ok := r.l.get(id)
	if !ok {
		return nil
	}
	return cloneTicket(t)
}

// put remembers a copy of t as the ticket's current state.
func (r *recentTickets) put(t *Ticket) {
	if r == nil {
		return
	}
	c := cloneTicket(t)
	c.Logs, c.Outbox = nil, nil
	r.l.put(t.ID, c)
}

// drop forgets a ticket: its document changed in a way put did not see.
func (r *recentTickets) drop(id bson.ObjectID) {
	if r != nil {
		r.l.drop(id)
	}
}

// cloneTicket copies everything a write may change in place or append to.
func cloneTicket(t *Ticket) *Ticket {
	c := *t
	c.Response = slices.Clone(t.Response)
	c.MessageIDs = slices.Clone(t.MessageIDs)
	c.Logs = slices.Clone(t.Logs)
	c.Outbox = slices.Clone(t.Outbox)
	if t.AssigneeID != nil {
		a := *t.AssigneeID
		c.AssigneeID = &a
	}
	if t.DeletedAt != nil {
		d := *t.DeletedAt
		c.DeletedAt = &d
	}
	if t.FirstResponse != nil {
		fr := *t.FirstResponse // its times are replaced, never changed in place
		c.FirstResponse = &fr
	}
	return &c
}
