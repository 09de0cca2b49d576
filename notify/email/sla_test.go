package email

import (
	"context"
	"testing"

	"github.com/ticketd/ticketd/store"
)

// First-response reminders and breaches are for the agents: never mailed,
// and skipped quietly as policy (not logged as an unknown kind).
func TestFirstResponseEventsAreNotMailed(t *testing.T) {
	for _, kind := range []store.EventKind{store.EventSLAReminder, store.EventSLABreached} {
		out, sk, err := (&Adapter{}).compose(context.Background(), &store.Delivery{Event: store.Event{Kind: kind}})
		if err != nil || out != nil || sk == nil || !sk.quiet {
			t.Errorf("%s: mail %v, skip %+v, err %v; want a quiet skip", kind, out, sk, err)
		}
	}
}
