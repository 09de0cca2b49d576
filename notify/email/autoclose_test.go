package email

import (
	"strings"
	"testing"
	"time"

	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/store"
)

// Auto-close (a scheduled job, as the system) is announced like an agent's
// status change: the customer of a mailed ticket gets a status mail.
func TestAutoCloseIsMailedToTheCustomer(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.relay()
	o := e.options()
	o.NoTicketAck = true
	e.start(o)
	tk := e.ticket("Printer on fire")
	e.setStatus(tk, store.StatusResolved)
	e.srv.WaitFor(t, 1, 10*time.Second)

	e.clock.Advance(8 * 24 * time.Hour)
	before := e.clock.Now().Add(-7 * 24 * time.Hour)
	if closed, err := e.st.CloseIdleTicket(e.ctx, tk.ID, before, " (no customer message for 7 days)"); err != nil || !closed {
		t.Fatalf("auto-close: %v %v", closed, err)
	}
	got := e.load(tk.ID)
	last := got.Outbox[len(got.Outbox)-1]
	if last.Kind != store.EventStatusChanged || last.ActorType != store.CreatorSystem || last.To != string(store.StatusClosed) {
		t.Fatalf("queued announcement: %+v", last)
	}
	e.srv.WaitFor(t, 2, 10*time.Second)
	msgs := e.srv.Messages()
	contains(t, "auto-close mail", bodyText(t, msgs[1]), "Resolved to Closed")
	if to := header(t, msgs[1], "To"); !strings.Contains(to, "bob@customer.example") {
		t.Errorf("mailed to %q", to)
	}
}
