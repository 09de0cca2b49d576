package store

import (
	"container/list"
	"slices"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// recentTickets remembers, for the most recently written tickets, the state
// this process last wrote (without Logs and Outbox), so that the next write
// to a ticket in an active conversation need not read it back first.
//
// It is used only when the store is serialized (the embedded server, which
// no other process writes), and only under the ticket's lock: then what it
// holds is what the database holds. Every other write to a ticket document
// drops the entry. Entries are deep copies, so no caller ever shares memory
// with it.
type recentTickets struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *Ticket, most recent first
	byID  map[bson.ObjectID]*list.Element
}

func newRecentTickets(max int) *recentTickets {
	return &recentTickets{max: max, order: list.New(), byID: map[bson.ObjectID]*list.Element{}}
}

// get returns a copy of the remembered ticket, or nil.
func (r *recentTickets) get(id bson.ObjectID) *Ticket {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byID[id]
	if !ok {
		return nil
	}
	r.order.MoveToFront(e)
	return cloneTicket(e.Value.(*Ticket))
}

// put remembers a copy of t as the ticket's current state.
func (r *recentTickets) put(t *Ticket) {
	if r == nil {
		return
	}
	c := cloneTicket(t)
	c.Logs, c.Outbox = nil, nil
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byID[t.ID]; ok {
		e.Value = c
		r.order.MoveToFront(e)
		return
	}
	r.byID[t.ID] = r.order.PushFront(c)
	if r.order.Len() > r.max {
		oldest := r.order.Back()
		r.order.Remove(oldest)
		delete(r.byID, oldest.Value.(*Ticket).ID)
	}
}

// drop forgets a ticket: its document changed in a way put did not see.
func (r *recentTickets) drop(id bson.ObjectID) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byID[id]; ok {
		r.order.Remove(e)
		delete(r.byID, id)
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
	return &c
}
