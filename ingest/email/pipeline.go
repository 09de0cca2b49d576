package email

import (
	"context"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/ticketd/ticketd/store"
)

// A mailbox is read over one connection, in UID order, but its messages
// are stored up to deliverInFlight at once: a store write waits for the
// disk (each is its own SQLite commit on the embedded server), and one
// message at a time kept the store waiting for the next mail to be fetched
// and parsed, and the mail waiting for the store. Messages that may belong
// to one conversation are stored one after the other, in UID order (see
// orderKeys), and the read position only moves over messages stored in
// order (see handleAll).

// deliverInFlight is how many messages of a mailbox are stored at once.
const deliverInFlight = 4

// orderKeys names what a message must not be stored beside: its sender
// (whose customer record, rate limit and replies follow each other), its
// own Message-ID (a copy of it is recognized, not stored twice), the
// Message-IDs it answers, and "reply" for any message that may thread
// into a ticket (thread headers, a subject tag, a reply address), so that
// replies keep their order. Two messages sharing a key are stored in UID
// order; a message without keys (unparsable: quarantined) has no order.
func (d *deliverer) orderKeys(msg *Message) []string {
	if msg == nil {
		return nil
	}
	keys := []string{"from:" + normAddr(msg.From.Address)}
	if id := store.NormalizeMessageID(msg.MessageID); id != "" {
		keys = append(keys, "id:"+id)
	}
	ids := threadIDs(msg)
	for _, id := range ids {
		keys = append(keys, "id:"+id)
	}
	if len(ids) > 0 || subjectTag.MatchString(msg.Subject) || d.mayCarryToken(msg) {
		keys = append(keys, "reply")
	}
	return keys
}

// mayCarryToken says whether a recipient is a reply address (base+token),
// verified or not.
func (d *deliverer) mayCarryToken(msg *Message) bool {
	if d.baseLocal == "" {
		return false
	}
	reply := func(addr string) bool {
		local, dom, _ := strings.Cut(normAddr(addr), "@")
		return dom == d.baseDomain && strings.HasPrefix(local, d.baseLocal+"+")
	}
	for _, a := range msg.To {
		if reply(a.Address) {
			return true
		}
	}
	for _, a := range msg.Cc {
		if reply(a.Address) {
			return true
		}
	}
	for _, a := range msg.DeliveredTo {
		if reply(a) {
			return true
		}
	}
	return false
}

// delivery is what became of one message stored by the pipeline.
type delivery struct {
	meta    msgMeta
	keys    []string
	res     Result
	err     error
	refused bool // see refusedMail
}

// pipeline tracks the messages of a mailbox being stored.
type pipeline struct {
	results chan delivery
	running int
	bytes   int64          // RFC822.SIZE of the messages running
	keys    map[string]int // orderKeys of the messages running
}

func newPipeline() *pipeline {
	return &pipeline{results: make(chan delivery, deliverInFlight), keys: map[string]int{}}
}

func (p *pipeline) conflicts(keys []string) bool {
	for _, k := range keys {
		if p.keys[k] > 0 {
			return true
		}
	}
	return false
}

// receive waits for a message being stored to end.
func (p *pipeline) receive() delivery {
	dv := <-p.results
	p.running--
	p.bytes -= dv.meta.size
	for _, k := range dv.keys {
		if p.keys[k]--; p.keys[k] == 0 {
			delete(p.keys, k)
		}
	}
	return dv
}

// start stores a parsed message in a goroutine of its own. A failure
// that is the mail's (refusedMail) for the MaxDeliveryAttempts-th time,
// counting tries before, quarantines it instead of blocking the mailbox.
func (p *pipeline) start(ctx context.Context, w *worker, m msgMeta, in inbound, msg *Message, perr error, keys []string, tries int) {
	p.running++
	p.bytes += m.size
	for _, k := range keys {
		p.keys[k]++
	}
	go func() {
		dv := delivery{meta: m, keys: keys}
		defer func() {
			if r := recover(); r != nil {
				dv.err = fmt.Errorf("panic storing uid %d: %v", m.uid, r)
			}
			p.results <- dv
		}()
		// The message in flight is finished even when ctx is cancelled.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultDeliveryTimeout)
		defer cancel()
		dv.res, dv.err = w.src.d.deliverParsed(mctx, in, msg, perr)
		if dv.err == nil {
			return
		}
		dv.refused = w.refusedMail(mctx, dv.err)
		if dv.refused && tries+1 >= w.src.opts.MaxDeliveryAttempts {
			w.log.Error("the store keeps refusing this message; quarantining it", "uid", m.uid, "err", dv.err)
			dv.res, dv.err = w.src.d.quarantine(mctx, in, "store refused it: "+dv.err.Error(), nil)
		}
	}()
}

// handleAll handles metas, listed in UID order: each is fetched and
// parsed in turn, and stored beside up to deliverInFlight-1 others while
// their orderKeys differ and their sizes fit in MaxMessageBytes together
// (the memory one message may take). The read position moves over a
// message (advance) once it and every message before it are handled, so
// it never runs ahead of what is stored. On a failed store it lets the
// messages in flight end and returns the first error; the rest are read
// again by the next session, and recognized.
func (w *worker) handleAll(ctx context.Context, c *imapclient.Client, st *store.MailboxState, metas []msgMeta) error {
	o := &w.src.opts
	p := newPipeline()
	handled := make(map[uint32]bool, len(metas))
	next := 0 // metas[next] is the first message not yet advanced over
	var failed error
	settle := func(uid uint32) error {
		handled[uid] = true
		for next < len(metas) && handled[metas[next].uid] {
			if err := w.advance(context.WithoutCancel(ctx), c, st, metas[next].uid); err != nil {
				return err
			}
			next++
		}
		return nil
	}
	receive := func() error {
		dv := p.receive()
		if dv.err != nil {
			if err := w.storeFailed(dv.err, dv.meta.uid, dv.refused); failed == nil {
				failed = err
			}
			return nil
		}
		delete(w.attempts, dv.meta.uid)
		w.unacked = append(w.unacked, pendingAck{dv.meta.uid, dv.res.Kind == KindQuarantined})
		return settle(dv.meta.uid)
	}
	defer func() { // whatever ended this, nothing is left running
		for p.running > 0 {
			p.receive()
		}
	}()
	for _, m := range metas {
		if ctx.Err() != nil || failed != nil {
			break
		}
		big := m.size > o.MaxMessageBytes
		for p.running > 0 && (big || p.running >= deliverInFlight || p.bytes+m.size > o.MaxMessageBytes) {
			if err := receive(); err != nil {
				return err
			}
		}
		if ctx.Err() != nil || failed != nil { // stopping: nothing new starts
			break
		}
		if big { // quarantined as before, alone and in order
			if err := w.handleOversize(ctx, c, st, m); err != nil {
				return err
			}
			handled[m.uid] = true
			next++
			continue
		}
		raw, err := w.fetchBody(c, m.uid, o.MaxMessageBytes)
		if err != nil {
			return err
		}
		if raw == nil { // expunged meanwhile
			if err := settle(m.uid); err != nil {
				return err
			}
			continue
		}
		w.src.c.fetched.Add(1)
		in := inbound{mailbox: w.id, uidValidity: st.UIDValidity, uid: m.uid, size: m.size, raw: raw}
		msg, perr := w.src.d.parse(in)
		keys := w.src.d.orderKeys(msg)
		for p.conflicts(keys) {
			if err := receive(); err != nil {
				return err
			}
		}
		if ctx.Err() != nil || failed != nil {
			break
		}
		p.start(ctx, w, m, in, msg, perr, keys, w.attempts[m.uid])
	}
	for p.running > 0 {
		if err := receive(); err != nil {
			return err
		}
	}
	return failed
}
