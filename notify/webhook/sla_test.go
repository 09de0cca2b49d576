package webhook

import (
	"testing"
	"time"

	"github.com/ticketd/ticketd/store"
)

// First-response reminders and breaches are for the agents: an endpoint
// wanting every kind still gets neither, and cannot ask for them.
func TestFirstResponseEventsAreNotSent(t *testing.T) {
	e := newEnv(t)
	a := e.adapter()
	tk := e.ticket()
	if ok, err := e.st.RecordFirstResponseReminder(e.ctx, tk.ID, time.Now()); err != nil || !ok {
		t.Fatalf("record: %v %v", ok, err)
	}
	if ok, err := e.st.RecordFirstResponseBreach(e.ctx, tk.ID, time.Now()); err != nil || !ok {
		t.Fatalf("record: %v %v", ok, err)
	}
	for _, kind := range []store.EventKind{store.EventSLAReminder, store.EventSLABreached} {
		if err := deliver(e.ctx, a, e.event(tk.ID, kind)); !skipped(err) {
			t.Errorf("%s: %v, want skipped", kind, err)
		}
		if _, err := New(Options{Name: "crm", URL: e.rc.srv.URL, Secret: testSecret, Store: e.st, Events: []store.EventKind{kind}}); err == nil {
			t.Errorf("an endpoint may ask for %s", kind)
		}
	}
	e.rc.none(t)
}
