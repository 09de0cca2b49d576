package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	emailout "github.com/ticketd/ticketd/notify/email"
	"github.com/ticketd/ticketd/notify/slackout"
)

// Config is the whole configuration file. Every key, its default and its
// meaning is in config.example.yaml, which a test loads through this loader.
type Config struct {
	// DataDir holds the embedded store and the generated JWT secret.
	DataDir string        `yaml:"dataDir"`
	Store   StoreConfig   `yaml:"store"`
	HTTP    HTTPConfig    `yaml:"http"`
	Auth    AuthConfig    `yaml:"auth"`
	Tickets TicketsConfig `yaml:"tickets"`
	Outbox  OutboxConfig  `yaml:"outbox"`
	Log     LogConfig     `yaml:"log"`
	Email   EmailConfig   `yaml:"email"`
	Slack   SlackConfig   `yaml:"slack"`
	// Webhooks are signed POSTs of ticket changes to API clients.
	Webhooks WebhooksConfig `yaml:"webhooks"`
	Jobs     JobsConfig     `yaml:"jobs"`
}

// StoreConfig says where tickets live.
type StoreConfig struct {
	// URI of a MongoDB deployment; empty runs the embedded store. The
	// MONGODB_URI environment variable overrides it.
	URI      string `yaml:"uri"`
	Database string `yaml:"database"`
}

// HTTPConfig configures the API listener.
type HTTPConfig struct {
	Listen          string        `yaml:"listen"`
	MaxBodyBytes    int64         `yaml:"maxBodyBytes"`
	RequestTimeout  time.Duration `yaml:"requestTimeout"`
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"`
	// PublicURL is where people reach the API from outside (behind a
	// proxy, say); links that ticketd posts (to attachments too large for
	// Slack) start with it. Empty: such links are left out.
	PublicURL string `yaml:"publicURL"`
}

// AuthConfig configures tokens.
type AuthConfig struct {
	// JWTSecret signs tokens; TICKETD_JWT_SECRET or TICKETD_JWT_SECRET_FILE
	// override it; when all are empty a secret is generated on first run
	// and kept in DataDir/jwt-secret (0600).
	JWTSecret string `yaml:"jwtSecret"`
	// TokenTTL is the default lifetime of `ticketd token`.
	TokenTTL time.Duration `yaml:"tokenTTL"`
}

// TicketsConfig configures ticket rules.
type TicketsConfig struct {
	Categories     []string `yaml:"categories"`
	MaxSubject     int      `yaml:"maxSubject"`
	MaxDescription int      `yaml:"maxDescription"`
}

// OutboxConfig configures the announcement relay.
type OutboxConfig struct {
	// SweepInterval is how often every ticket is checked for announcements
	// that were not relayed (after a crash); writes are relayed at once.
	SweepInterval time.Duration `yaml:"sweepInterval"`
}

// LogConfig configures logging.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// sinks is the deployment's set of notification sinks, derived from the
// configuration alone (never from which workers this daemon runs), so that
// every daemon of a deployment relays events for the same set.
func (c Config) sinks() []string {
	var sinks []string
	if c.Email.Enabled {
		sinks = append(sinks, emailout.Sink)
	}
	if c.Slack.Enabled {
		sinks = append(sinks, slackout.Sink)
	}
	sinks = append(sinks, c.Webhooks.sinks()...)
	return sinks
}

func defaultConfig() Config {
	return Config{
		DataDir: "./data",
		Store:   StoreConfig{Database: "ticketd"},
		HTTP: HTTPConfig{
			Listen:         "127.0.0.1:8000",
			RequestTimeout: 15 * time.Second, ShutdownTimeout: 20 * time.Second,
		},
		Auth:    AuthConfig{TokenTTL: 24 * time.Hour},
		Tickets: TicketsConfig{Categories: []string{"Support", "Billing", "Technical", "Account", "Other"}, MaxSubject: 200, MaxDescription: 20000},
		Outbox:  OutboxConfig{SweepInterval: time.Minute},
		Log:     LogConfig{Level: "info", Format: "text"},
		Slack:   defaultSlackConfig(),
		Jobs:    defaultJobsConfig(),
	}
}

// loadConfig reads a file over the defaults (path "" means defaults only),
// applies environment overrides and validates. Unknown keys are errors with
// their line; every invalid value is reported at once with its key path.
func loadConfig(path string, getenv func(string) string) (Config, error) {
	cfg := defaultConfig()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		return cfg, err
	}
	if err := cfg.validate(); err != nil {
		if path == "" {
			path = "configuration"
		}
		return cfg, fmt.Errorf("%s is invalid:\n%w", path, err)
	}
	return cfg, nil
}

// applyEnv lets secrets and the database address come from the
// environment, as FOO or FOO_FILE (a file holding the value).
func applyEnv(cfg *Config, getenv func(string) string) error {
	if v := getenv("MONGODB_URI"); v != "" {
		cfg.Store.URI = v
	}
	v, err := secretFromEnv(getenv, "TICKETD_JWT_SECRET")
	if err != nil {
		return err
	}
	if v != "" {
		cfg.Auth.JWTSecret = v
	}
	if err := applySlackEnv(&cfg.Slack, getenv); err != nil {
		return err
	}
	if err := applyWebhookEnv(&cfg.Webhooks, getenv); err != nil {
		return err
	}
	return applyEmailEnv(&cfg.Email, getenv)
}

func secretFromEnv(getenv func(string) string, name string) (string, error) {
	if v := getenv(name); v != "" {
		return v, nil
	}
	if f := getenv(name + "_FILE"); f != "" {
		raw, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %w", name, err)
		}
		return strings.TrimSpace(string(raw)), nil
	}
	return "", nil
}

func (c *Config) validate() error {
	var errs []error
	// line reports one "key: problem"; bad formats one.
	line := func(l string) { errs = append(errs, errors.New("  "+l)) }
	bad := func(key, format string, args ...any) { line(key + ": " + fmt.Sprintf(format, args...)) }
	if c.DataDir == "" {
		bad("dataDir", "must name a directory")
	}
	if c.Store.Database == "" || strings.ContainsAny(c.Store.Database, `/\. "$`) {
		bad("store.database", "must be a database name without /\\. \"$, got %q", c.Store.Database)
	}
	if c.Store.URI != "" && !strings.HasPrefix(c.Store.URI, "mongodb://") && !strings.HasPrefix(c.Store.URI, "mongodb+srv://") {
		bad("store.uri", "must start with mongodb:// or mongodb+srv://")
	}
	if _, port, err := net.SplitHostPort(c.HTTP.Listen); err != nil || port == "" {
		bad("http.listen", "must be host:port, got %q", c.HTTP.Listen)
	}
	if u, err := url.Parse(c.HTTP.PublicURL); c.HTTP.PublicURL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
		bad("http.publicURL", "must be empty or an http(s) URL such as https://tickets.example.com, got %q", c.HTTP.PublicURL)
	}
	if c.HTTP.MaxBodyBytes != 0 && (c.HTTP.MaxBodyBytes < 1024 || c.HTTP.MaxBodyBytes > 64<<20) {
		bad("http.maxBodyBytes", "must be 0 (derived from the ticket limits) or from 1024 to 67108864, got %d", c.HTTP.MaxBodyBytes)
	}
	positive := map[string]time.Duration{
		"http.requestTimeout": c.HTTP.RequestTimeout, "http.shutdownTimeout": c.HTTP.ShutdownTimeout,
		"auth.tokenTTL": c.Auth.TokenTTL, "outbox.sweepInterval": c.Outbox.SweepInterval,
	}
	for _, k := range []string{"http.requestTimeout", "http.shutdownTimeout", "auth.tokenTTL", "outbox.sweepInterval"} {
		if positive[k] <= 0 {
			bad(k, "must be a positive duration such as 30s, got %s", positive[k])
		}
	}
	switch s := c.Auth.JWTSecret; {
	case s != "" && len(s) < 32:
		bad("auth.jwtSecret", "must be at least 32 characters (or empty to generate one), got %d", len(s))
	case s == "" && c.Store.URI != "":
		// A generated secret lives in one host's dataDir: daemons sharing
		// a MongoDB would each accept only their own tokens and reply
		// addresses.
		bad("auth.jwtSecret", "must be set (or TICKETD_JWT_SECRET) when store.uri is: every daemon on the database must share it")
	}
	if len(c.Tickets.Categories) == 0 {
		bad("tickets.categories", "must list at least one category")
	}
	seen := map[string]bool{}
	for i, cat := range c.Tickets.Categories {
		if strings.TrimSpace(cat) == "" || seen[cat] {
			bad(fmt.Sprintf("tickets.categories[%d]", i), "must be a non-empty name listed once, got %q", cat)
		}
		seen[cat] = true
	}
	if c.Tickets.MaxSubject < 1 || c.Tickets.MaxSubject > 1000 {
		bad("tickets.maxSubject", "must be from 1 to 1000, got %d", c.Tickets.MaxSubject)
	}
	if c.Tickets.MaxDescription < 1 || c.Tickets.MaxDescription > 1_000_000 {
		bad("tickets.maxDescription", "must be from 1 to 1000000, got %d", c.Tickets.MaxDescription)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.Log.Level)); err != nil {
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	c.Email.validate(bad, line, c.HTTP.ShutdownTimeout)
	c.Slack.validate(bad, line, c.Tickets.Categories, c.HTTP.ShutdownTimeout)
	c.Webhooks.validate(bad, line, c.HTTP.ShutdownTimeout)
	c.Jobs.validate(bad)
	c.Jobs.SLAJobsConfig.validate(bad, "jobs.", c.Slack.Enabled)
	return errors.Join(errs...)
}

func (c *Config) logger(w io.Writer) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: lv}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
