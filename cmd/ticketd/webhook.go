package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/notify/webhook"
	"github.com/ticketd/ticketd/store"
)

// Proven here, where every package is known: the store is what the webhook
// sink reads.
var _ webhook.TicketReader = (*store.Store)(nil)

// WebhooksConfig configures the webhooks for API clients: each endpoint is
// a sink of its own, "webhook:" and its name.
type WebhooksConfig struct {
	// Enabled turns the webhooks on; the other keys are checked only then.
	Enabled bool `yaml:"enabled"`
	// Endpoints receive the POSTs.
	Endpoints []WebhookEndpoint `yaml:"endpoints"`
	// Timeout bounds one POST, connecting included; 0 means 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Delivery tunes every endpoint's delivery runner (the outbox); the
	// keys mean what email.outbound's of the same names mean, zero values
	// their defaults. Like the sinks themselves, the webhooks' defaults
	// live with the code that uses them, not in defaultConfig.
	Delivery notify.Schedule `yaml:"delivery"`
}

// WebhookEndpoint is one receiver.
type WebhookEndpoint struct {
	// Name names the endpoint in its sink, the dead letters, logs and
	// metrics, and in the environment variable of its secret.
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Secret is whsec_ and the base64 of a 24 to 64 byte key;
	// TICKETD_WEBHOOK_<NAME>_SECRET(_FILE) overrides it.
	Secret string `yaml:"secret"`
	// Events are the kinds sent; empty means all.
	Events []store.EventKind `yaml:"events"`
	// IncludeInternalNotes sends agents' internal notes too.
	IncludeInternalNotes bool `yaml:"includeInternalNotes"`
}

// sinks are the endpoints' sinks, when the webhooks are on.
func (w WebhooksConfig) sinks() []string {
	if !w.Enabled {
		return nil
	}
	var out []string
	for _, ep := range w.Endpoints {
		out = append(out, webhook.Sink(ep.Name))
	}
	return out
}

// webhookSecretEnv is the environment variable of an endpoint's secret:
// TICKETD_WEBHOOK_CRM_EU_SECRET for the endpoint crm-eu.
func webhookSecretEnv(name string) string {
	return "TICKETD_WEBHOOK_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_SECRET"
}

// applyWebhookEnv takes the endpoints' secrets from the environment when
// set.
func applyWebhookEnv(w *WebhooksConfig, getenv func(string) string) error {
	for i := range w.Endpoints {
		v, err := secretFromEnv(getenv, webhookSecretEnv(w.Endpoints[i].Name))
		if err != nil {
			return err
		}
		if v != "" {
			w.Endpoints[i].Secret = v
		}
	}
	return nil
}

// options are the adapter's options for an endpoint (store and logger
// left for start).
func (w WebhooksConfig) options(ep WebhookEndpoint) webhook.Options {
	return webhook.Options{Name: ep.Name, URL: ep.URL, Secret: ep.Secret, Events: ep.Events,
		IncludeInternalNotes: ep.IncludeInternalNotes, Timeout: w.Timeout}
}

// validate checks every endpoint with the adapter's own validator, whose
// "key: problem" lines it reports under the endpoint's key path.
func (w *WebhooksConfig) validate(bad func(key, format string, args ...any), line func(string), shutdown time.Duration) {
	if !w.Enabled {
		return
	}
	if len(w.Endpoints) == 0 {
		bad("webhooks.endpoints", "must list at least one endpoint when webhooks.enabled is true")
	}
	if w.Timeout < 0 {
		bad("webhooks.timeout", "must be 0 (10s) or a positive duration such as 30s, got %s", w.Timeout)
	}
	for i, ep := range w.Endpoints {
		prefix := fmt.Sprintf("webhooks.endpoints[%d].", i)
		if slices.IndexFunc(w.Endpoints, func(o WebhookEndpoint) bool { return o.Name == ep.Name }) < i {
			bad(prefix+"name", "%q is used by an earlier endpoint", ep.Name)
		}
		o := w.options(ep)
		o.Timeout = 0 // reported above, once
		for _, l := range errLines(o.Validate()) {
			l = strings.TrimSpace(l)
			if strings.HasPrefix(l, "secret:") {
				l += " (or " + webhookSecretEnv(ep.Name) + ")"
			}
			line(prefix + l)
		}
	}
	for _, l := range errLines(w.Delivery.Options("webhook").Validate()) {
		line("webhooks.delivery." + strings.TrimSpace(l))
	}
	if g := w.Delivery.WithDefaults().ShutdownGrace; g >= shutdown {
		bad("webhooks.delivery.shutdownGrace", "%s must be shorter than http.shutdownTimeout (%s), or shutdown cuts it short", g, shutdown)
	}
}

// startWebhooks runs one delivery runner per endpoint as a worker, each
// with its counters on /metrics (ticketd_webhook_deliveries_total,
// labelled by endpoint).
func startWebhooks(ctx context.Context, wg *sync.WaitGroup, cfg WebhooksConfig, st *store.Store, log *slog.Logger, reg prometheus.Registerer) error {
	if !cfg.Enabled {
		return nil
	}
	for _, ep := range cfg.Endpoints {
		o := cfg.options(ep)
		o.Store, o.Logger = st, log
		a, err := webhook.New(o)
		if err != nil {
			return fmt.Errorf("webhooks: %w", err)
		}
		r, err := notify.NewRunner(cfg.Delivery.Options(webhook.Sink(ep.Name)), st, a, log)
		if err != nil {
			return fmt.Errorf("webhooks.endpoints %s: %w", ep.Name, err)
		}
		c := newStatsCollector("", "", r.Stats)
		c.desc = prometheus.NewDesc("ticketd_webhook_deliveries_total", "Webhook deliveries by endpoint and outcome (sent, skipped, retried, ratelimited, dead).",
			[]string{"outcome"}, prometheus.Labels{"endpoint": ep.Name})
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("webhooks.endpoints %s: metrics: %w", ep.Name, err)
		}
		// The URL without its query, which some receivers use for a token.
		where, _, _ := strings.Cut(ep.URL, "?")
		log.Info("webhook endpoint configured", "endpoint", ep.Name, "url", where, "events", o.Events, "internal_notes", ep.IncludeInternalNotes)
		runWorker(ctx, wg, log, webhook.Sink(ep.Name), r.Run)
	}
	return nil
}
