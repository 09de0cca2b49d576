package slackin

import (
	"context"
	"sync"
	"testing"

	"github.com/slack-go/slack/slackevents"

	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/store/storetest"
)

// Two daemons on one store whose bridges both receive the same event (a
// retry that reached another daemon, or both at once): it is applied once,
// whichever daemon gets it, and the later copies are counted as
// deduplicated.
func TestTwoBridgesOnOneStoreApplyAnEventOnce(t *testing.T) {
	shared := storetest.Shared(t, 2)
	var o Options
	d := newIntakeDesk(t, func(opt *Options) { opt.Store = shared[0]; o = *opt })
	o.Store = shared[1]
	other, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	bridges := []*Bridge{d.b, other}
	ctx := context.Background()
	// both hands env to both bridges at once, then to each again.
	both := func(env slackfake.Envelope) {
		t.Helper()
		ev, err := slackevents.ParseEvent(env.Payload, slackevents.OptionNoVerifyToken())
		if err != nil {
			t.Fatal(err)
		}
		id := eventID(ev)
		var wg sync.WaitGroup
		for _, b := range bridges {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := b.HandleEvent(ctx, ev, id); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		for _, b := range bridges {
			if err := b.HandleEvent(ctx, ev, id); err != nil {
				t.Error(err)
			}
		}
	}
	dedup := func() int64 { return d.b.Counts.Deduplicated.Load() + other.Counts.Deduplicated.Load() }

	both(d.reply(annID, "From whichever daemon"))
	if tk := d.load(); len(tk.Response) != 1 {
		t.Errorf("%d responses from one agent reply delivered to two daemons, want 1", len(tk.Response))
	}
	if n := dedup(); n < 2 {
		t.Errorf("%d deliveries counted as deduplicated, want at least the 2 after the first", n)
	}

	before := d.ticketCount()
	both(d.f.MessageEvent(slackfake.MessageSpec{Channel: intakeCh, User: guestID, Text: "My order never came"}))
	if n := d.ticketCount() - before; n != 1 {
		t.Errorf("%d tickets from one customer message delivered to two daemons, want 1", n)
	}
}
