package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ticketd/ticketd/api"
	emailin "github.com/ticketd/ticketd/ingest/email"
	"github.com/ticketd/ticketd/internal/replytoken"
	"github.com/ticketd/ticketd/notify"
	emailout "github.com/ticketd/ticketd/notify/email"
	"github.com/ticketd/ticketd/store"
)

// Proven here, where every package is known: the store is what the email
// bridge needs in both directions.
var (
	_ emailin.Store      = (*store.Store)(nil)
	_ emailout.Store     = (*store.Store)(nil)
	_ notify.OutboxStore = (*store.Store)(nil)
)

// EmailConfig configures the email bridge: IMAP and LMTP in, SMTP out.
type EmailConfig struct {
	// Enabled turns the bridge on; the other keys are checked only then.
	Enabled bool `yaml:"enabled"`
	// Address is the support address customers write to. Replies carry a
	// signed token on it (support+TOKEN@example.com); it is the default of
	// outbound.from, outbound.replyTo and inbound.replyBaseAddress, and mail
	// from it never opens a ticket.
	Address  string           `yaml:"address"`
	Inbound  emailin.Options  `yaml:"inbound"`
	Outbound emailout.Options `yaml:"outbound"`
}

// completeEmail fills the defaults that depend on email.address.
func (e *EmailConfig) complete() {
	if e.Address == "" {
		return
	}
	if e.Outbound.From == "" {
		e.Outbound.From = e.Address
	}
	if e.Outbound.ReplyTo == "" {
		e.Outbound.ReplyTo = e.Address
	}
	if e.Inbound.ReplyBaseAddress == "" {
		e.Inbound.ReplyBaseAddress = e.Address
	}
}

// validate checks the bridge's settings with each side's own validator,
// whose "key: problem" lines it reports with this file's key path in front.
func (e *EmailConfig) validate(bad func(key, format string, args ...any), line func(string), shutdown time.Duration) {
	if !e.Enabled {
		return
	}
	if e.Address == "" || !strings.Contains(e.Address, "@") {
		bad("email.address", "must be the support address, like support@example.com, got %q", e.Address)
	}
	effective := func(v, def time.Duration) time.Duration {
		if v == 0 {
			return def
		}
		return v
	}
	for _, g := range []struct {
		key   string
		grace time.Duration
	}{
		{"email.inbound.shutdownGrace", effective(e.Inbound.ShutdownGrace, emailin.DefaultShutdownGrace)},
		{"email.outbound.shutdownGrace", effective(e.Outbound.ShutdownGrace, emailout.DefaultShutdownGrace)},
	} {
		if g.grace >= shutdown {
			bad(g.key, "%s must be shorter than http.shutdownTimeout (%s), or shutdown cuts it short", g.grace, shutdown)
		}
	}
	c := *e
	c.complete()
	c.Outbound.Signer = replytoken.New([]byte("validation only"))
	for _, side := range []struct {
		prefix string
		err    error
	}{{"email.inbound.", c.Inbound.Validate()}, {"email.outbound.", c.Outbound.Validate()}} {
		for _, l := range errLines(side.err) {
			line(side.prefix + strings.TrimSpace(l))
		}
	}
}

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// applyEmailEnv takes the mail passwords from the environment.
func applyEmailEnv(e *EmailConfig, getenv func(string) string) error {
	smtp, err := secretFromEnv(getenv, "TICKETD_SMTP_PASSWORD")
	if err != nil {
		return err
	}
	if smtp != "" {
		e.Outbound.SMTP.Auth.Password = smtp
	}
	imap, err := secretFromEnv(getenv, "TICKETD_IMAP_PASSWORD")
	if err != nil {
		return err
	}
	for i := range e.Inbound.Accounts {
		if imap != "" && e.Inbound.Accounts[i].Password == "" {
			e.Inbound.Accounts[i].Password = imap
		}
	}
	return nil
}

// replySecret derives the reply-token key from the JWT secret, so an
// operator manages one secret; rotating it only makes old reply addresses
// fall back to Message-ID threading.
func replySecret(jwtSecret []byte) []byte {
	m := hmac.New(sha256.New, jwtSecret)
	m.Write([]byte("ticketd reply tokens"))
	return m.Sum(nil)
}

// startEmail starts the inbound source and the outbound notifier as
// workers, and returns the source when it reads IMAP mailboxes (for
// /readyz), else nil.
func startEmail(ctx context.Context, wg *sync.WaitGroup, cfg EmailConfig, st *store.Store, secret []byte, log *slog.Logger, reg prometheus.Registerer) (*emailin.Source, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	cfg.complete()
	signer := replytoken.New(replySecret(secret))
	out := cfg.Outbound
	out.Signer = signer
	adapter, err := emailout.NewAdapter(out, st, log)
	if err != nil {
		return nil, fmt.Errorf("email.outbound: %w", err)
	}
	ro := out.RunnerOptions()
	ro.Outcome = recordOutcome(st, log)
	notifier, err := notify.NewRunner(ro, st, adapter, log)
	if err != nil {
		return nil, fmt.Errorf("email.outbound: %w", err)
	}
	in := cfg.Inbound
	in.ReplySigner = signer
	in.Logger = log
	in.OwnAddresses = append(append([]string{}, in.OwnAddresses...), cfg.Address, out.From)
	source, err := emailin.New(st, in)
	if err != nil {
		return nil, fmt.Errorf("email.inbound: %w", err)
	}
	reg.MustRegister(
		newStatsCollector("ticketd_email_inbound_messages_total", "Inbound mail by outcome (tickets, responses, duplicates, ignored, quarantined, ...).", source.Stats),
		newStatsCollector("ticketd_email_outbound_deliveries_total", "Outbound mail deliveries by outcome (sent, skipped, retried, dead).", notifier.Stats),
	)
	// The notifier's writes are deferred work: on the embedded store they
	// yield to the writes of incoming mail (store.Deferrable).
	runWorker(ctx, wg, log, "email-outbound", func(ctx context.Context) error { return notifier.Run(store.Deferrable(ctx)) })
	var reader *emailin.Source
	if len(in.Accounts) > 0 {
		runWorker(ctx, wg, log, "email-inbound", source.Run)
		reader = source
	}
	if in.LMTP.Listen != "" {
		// Listening now makes a taken address a startup error; a restart
		// after a failure listens again.
		l, err := emailin.ListenLMTP(in.LMTP.Listen)
		if err != nil {
			return nil, fmt.Errorf("email.inbound.lmtp: %w", err)
		}
		runWorker(ctx, wg, log, "email-lmtp", func(ctx context.Context) error {
			lis := l
			l = nil
			if lis == nil {
				if lis, err = emailin.ListenLMTP(in.LMTP.Listen); err != nil {
					return err
				}
			}
			return source.ServeLMTP(ctx, lis)
		})
	}
	return reader, nil
}

// recordOutcome announces whether a customer got an agent's reply, so
// that the agent sees it where they wrote it (a reaction in Slack). Every
// sink that reaches customers (email, and Slack for tickets opened there)
// reports through it.
func recordOutcome(st *store.Store, log *slog.Logger) func(ctx context.Context, d *store.Delivery, delivered bool, reason string) {
	return func(ctx context.Context, d *store.Delivery, delivered bool, reason string) {
		if err := st.RecordDeliveryOutcome(ctx, d, delivered, reason); err != nil {
			log.Error("record delivery outcome", "delivery", d.ID, "delivered", delivered, "err", err)
		}
	}
}

// mailboxComponents reports each IMAP mailbox on /readyz: "reading" here,
// or "standby" while another daemon of the deployment holds its lease.
// Neither is degraded: standing by is how several daemons share mail.
func mailboxComponents(src *emailin.Source) []api.ComponentStatus {
	var out []api.ComponentStatus
	for _, m := range src.Mailboxes() {
		out = append(out, api.ComponentStatus{Name: "mailbox " + m.ID, State: m.State, Reason: m.Reason})
	}
	return out
}
