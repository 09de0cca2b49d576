package main

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func noEnv(string) string { return "" }

// The example must load through the real loader, give the defaults, and
// list every key the loader knows.
func TestExampleConfigIsCompleteAndValid(t *testing.T) {
	cfg, err := loadConfig("../../config.example.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	def := defaultConfig()
	cfg.Email, def.Email = EmailConfig{}, EmailConfig{} // the bridges fill their own defaults; only listed here
	cfg.Webhooks, def.Webhooks = WebhooksConfig{}, WebhooksConfig{}
	if !reflect.DeepEqual(cfg, def) {
		t.Errorf("example values differ from the defaults:\n example %+v\ndefaults %+v", cfg, defaultConfig())
	}
	raw, _ := os.ReadFile("../../config.example.yaml")
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range yamlKeys(reflect.TypeOf(Config{}), "") {
		if !hasKey(doc, strings.Split(key, ".")) {
			t.Errorf("config.example.yaml lacks %s", key)
		}
	}
}

// yamlKeys lists the key paths of a config struct, down to the leaves. An
// embedded struct tagged ",inline" contributes its keys at t's level.
func yamlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, flags, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.Anonymous && name == "" && slices.Contains(strings.Split(flags, ","), "inline") && f.Type.Kind() == reflect.Struct {
			keys = append(keys, yamlKeys(f.Type, prefix)...)
			continue
		}
		if name == "-" || name == "" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			ft, name = ft.Elem(), name+"[]"
		}
		if ft.Kind() == reflect.Struct && strings.HasPrefix(ft.PkgPath(), "github.com/ticketd/ticketd") {
			keys = append(keys, yamlKeys(ft, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// yamlKeys must see the keys of an inline embedded struct (email.outbound's
// schedule) at its parent's level, or the example check above skips them.
func TestYAMLKeysSeesInlineStructs(t *testing.T) {
	keys := yamlKeys(reflect.TypeOf(Config{}), "")
	for _, want := range []string{"email.outbound.from", "email.outbound.maxAttempts", "email.outbound.shutdownGrace",
		"slack.delivery.maxAttempts", "slack.delivery.shutdownGrace"} {
		if !slices.Contains(keys, want) {
			t.Errorf("yamlKeys lacks %s", want)
		}
	}
	for _, k := range keys {
		for _, seg := range strings.Split(k, ".") {
			if seg == "" || strings.ToLower(seg[:1]) != seg[:1] {
				t.Errorf("malformed key %q", k)
			}
		}
	}
}

// hasKey looks a key path up; "name[]" descends into a list's first item.
func hasKey(doc map[string]any, path []string) bool {
	name, list := strings.CutSuffix(path[0], "[]")
	v, ok := doc[name]
	if !ok {
		return false
	}
	if list {
		items, ok := v.([]any)
		if !ok || len(items) == 0 {
			return false
		}
		v = items[0]
	}
	if len(path) == 1 {
		return true
	}
	m, ok := v.(map[string]any)
	return ok && hasKey(m, path[1:])
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ticketd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigReportsEveryBadValueWithItsKey(t *testing.T) {
	p := writeFile(t, `
dataDir: ""
store: {uri: "postgres://x", database: "a.b"}
http: {listen: "8000", maxBodyBytes: 10, requestTimeout: 0s, shutdownTimeout: -1s, publicURL: "tickets.example.com"}
auth: {jwtSecret: short, tokenTTL: 0s}
tickets: {categories: [Support, Support, ""], maxSubject: 0, maxDescription: 0}
outbox: {sweepInterval: 0s}
log: {level: loud, format: xml}
`)
	_, err := loadConfig(p, noEnv)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, key := range []string{"dataDir", "store.uri", "store.database", "http.listen", "http.maxBodyBytes",
		"http.publicURL", "http.requestTimeout", "http.shutdownTimeout", "auth.jwtSecret", "auth.tokenTTL", "tickets.categories[1]",
		"tickets.categories[2]", "tickets.maxSubject", "tickets.maxDescription", "outbox.sweepInterval", "log.level", "log.format"} {
		if !strings.Contains(err.Error(), "  "+key+": ") {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestConfigRejectsUnknownKeysWithLine(t *testing.T) {
	p := writeFile(t, "http:\n  listen: 127.0.0.1:1\n  lsiten: 127.0.0.1:2\n")
	_, err := loadConfig(p, noEnv)
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "lsiten") {
		t.Errorf("unknown key: %v", err)
	}
	p = writeFile(t, "http: {maxBodyBytes: lots}\n")
	if _, err := loadConfig(p, noEnv); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("wrong type: %v", err)
	}
}

// email.outbound's schedule keys are inline: they decode at that level,
// and the strict decoder still refuses a misspelt one there.
func TestEmailOutboundScheduleKeysAreInline(t *testing.T) {
	cfg, err := loadConfig(writeFile(t, "email:\n  outbound:\n    maxAttempts: 3\n    shutdownGrace: 4s\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if o := cfg.Email.Outbound; o.MaxAttempts != 3 || o.ShutdownGrace != 4*time.Second {
		t.Errorf("schedule keys not decoded: %+v", o.Schedule)
	}
	_, err = loadConfig(writeFile(t, "email:\n  outbound:\n    maxAttempts: 3\n    maxAttempt: 4\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "maxAttempt ") {
		t.Errorf("unknown key: %v", err)
	}
	_, err = loadConfig(writeFile(t, "email:\n  outbound:\n    schedule: {maxAttempts: 3}\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "schedule") {
		t.Errorf("the embedded struct's own name accepted as a key: %v", err)
	}
}

func TestSharedDatabaseNeedsAnExplicitSecret(t *testing.T) {
	p := writeFile(t, "store: {uri: \"mongodb://db:27017\"}\n")
	if _, err := loadConfig(p, noEnv); err == nil || !strings.Contains(err.Error(), "auth.jwtSecret") {
		t.Errorf("store.uri without a secret: %v", err)
	}
	env := map[string]string{"TICKETD_JWT_SECRET": strings.Repeat("s", 32)}
	if _, err := loadConfig(p, func(k string) string { return env[k] }); err != nil {
		t.Errorf("with TICKETD_JWT_SECRET: %v", err)
	}
}

func TestEnvironmentOverridesSecrets(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "s")
	os.WriteFile(secretFile, []byte("from-a-file-0123456789abcdef0123456789\n"), 0o600)
	env := map[string]string{"MONGODB_URI": "mongodb://db:27017", "TICKETD_JWT_SECRET_FILE": secretFile}
	cfg, err := loadConfig("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.URI != "mongodb://db:27017" || cfg.Auth.JWTSecret != "from-a-file-0123456789abcdef0123456789" {
		t.Errorf("overrides not applied: %+v", cfg)
	}
	env = map[string]string{"TICKETD_JWT_SECRET_FILE": "/nonexistent"}
	if _, err := loadConfig("", func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "TICKETD_JWT_SECRET_FILE") {
		t.Errorf("missing secret file: %v", err)
	}
}

// With the bridge switched on, the example's placeholders must validate: it
// is a working template, not just a list.
func TestExampleEmailSectionValidatesWhenEnabled(t *testing.T) {
	raw, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	on := strings.Replace(string(raw), "email:\n  enabled: false", "email:\n  enabled: true", 1)
	if on == string(raw) {
		t.Fatal("example has no email.enabled: false to switch")
	}
	env := map[string]string{"TICKETD_SMTP_PASSWORD": "smtp-pw", "TICKETD_IMAP_PASSWORD": "imap-pw"}
	getenv := func(k string) string { return env[k] }
	cfg, err := loadConfig(writeFile(t, on), getenv)
	if err != nil {
		t.Fatalf("example with email enabled: %v", err)
	}
	if cfg.Email.Outbound.SMTP.Auth.Password != "smtp-pw" || cfg.Email.Inbound.Accounts[0].Password != "imap-pw" {
		t.Errorf("mail passwords not taken from the environment")
	}
	broken := strings.Replace(on, "host: smtp.example.com", `host: ""`, 1)
	broken = strings.Replace(broken, "shutdownTimeout: 20s", "shutdownTimeout: 12s", 1) // the inbound grace is 15s
	broken = strings.Replace(broken, "security: starttls", "security: carrier-pigeon", 1)
	broken = strings.Replace(broken, "tls: tls", "tls: sometimes", 1)
	_, err = loadConfig(writeFile(t, broken), getenv)
	for _, key := range []string{"email.outbound.smtp.host", "email.outbound.smtp.security", "email.inbound.accounts[0].tls", "email.inbound.shutdownGrace"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}

// The slack section: tokens from the environment, what each mode requires,
// every bad value named with its key path.
func TestSlackConfig(t *testing.T) {
	raw, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	on := strings.Replace(string(raw), "slack:\n  enabled: false", "slack:\n  enabled: true", 1)
	on = strings.Replace(on, "  channel: \"\"", "  channel: C0AGENTS01", 1)
	if !strings.Contains(on, "slack:\n  enabled: true") || !strings.Contains(on, "C0AGENTS01") {
		t.Fatal("example has no slack.enabled: false or channel: \"\" to switch")
	}
	tokenFile := filepath.Join(t.TempDir(), "bot")
	os.WriteFile(tokenFile, []byte("xoxb-from-file\n"), 0o600)
	env := map[string]string{"TICKETD_SLACK_BOT_TOKEN_FILE": tokenFile, "TICKETD_SLACK_APP_TOKEN": "xapp-1-env"}
	getenv := func(k string) string { return env[k] }
	cfg, err := loadConfig(writeFile(t, on), getenv)
	if err != nil {
		t.Fatalf("example with slack enabled: %v", err)
	}
	if cfg.Slack.BotToken != "xoxb-from-file" || cfg.Slack.AppToken != "xapp-1-env" {
		t.Errorf("tokens not taken from the environment: %+v", cfg.Slack)
	}

	// Without the environment the example's empty tokens are reported.
	_, err = loadConfig(writeFile(t, on), noEnv)
	for _, key := range []string{"slack.botToken", "slack.appToken"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}

	p := writeFile(t, `
slack:
  enabled: true
  mode: events
  botToken: xoxp-user-token
  appToken: secret-app
  apiURL: "ftp://slack.com/api"
  channel: "#support"
  replyDefault: everyone
  notePrefix: " // "
  intakeChannels: [C0INTAKE01, C0INTAKE01, general, C0AGENTS01, C0INTAKE02]
  channelTeams: {C0ELSEWHERE: acme, C0INTAKE01: "", C0INTAKE02: "personal:0123456789abcdef01234567"}
  intakeCategory: Gossip
  maxUploadBytes: -1
  delivery: {backoffBase: 2h, backoffMax: 1h, shutdownGrace: 1h}
`)
	_, err = loadConfig(p, noEnv)
	for _, key := range []string{"slack.signingSecret", "slack.appToken", "slack.botToken", "slack.apiURL", "slack.channel",
		"slack.replyDefault", "slack.notePrefix", "slack.intakeChannels[1]", "slack.intakeChannels[2]",
		"slack.channelTeams.C0ELSEWHERE", "slack.channelTeams.C0INTAKE01", "slack.channelTeams.C0INTAKE02", "slack.intakeCategory",
		"slack.maxUploadBytes", "slack.delivery.backoffMax", "slack.delivery.shutdownGrace"} {
		if err == nil || !strings.Contains(err.Error(), key+":") {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	if err != nil && (strings.Contains(err.Error(), "xoxp-user-token") || strings.Contains(err.Error(), "secret-app")) {
		t.Errorf("error prints a token: %v", err)
	}
	p = writeFile(t, "slack: {enabled: true, mode: carrier-pigeon, botToken: xoxb-1, channel: C0AGENTS01}\n")
	if _, err := loadConfig(p, noEnv); err == nil || !strings.Contains(err.Error(), "slack.mode:") {
		t.Errorf("bad mode: %v", err)
	}
	env = map[string]string{"TICKETD_SLACK_SIGNING_SECRET": strings.Repeat("a", 32)}
	p = writeFile(t, "slack: {enabled: true, mode: events, botToken: xoxb-1, channel: C0AGENTS01}\n")
	if _, err := loadConfig(p, func(k string) string { return env[k] }); err != nil {
		t.Errorf("events mode without an app token: %v", err)
	}
}
