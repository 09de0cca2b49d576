package email

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ticketd/ticketd/internal/replytoken"
	"github.com/ticketd/ticketd/notify"
)

func TestValidateReportsEveryBadValueWithItsKey(t *testing.T) {
	err := Options{}.Validate()
	if err == nil {
		t.Fatal("zero Options validated")
	}
	for _, key := range []string{"smtp.host:", "from:", "signer:"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("zero Options: %v\nwant a line for %s", err, key)
		}
	}

	bad := Options{
		SMTP: SMTPOptions{
			Host: "smtp.example.com", Port: 70000, Security: "ssl", Timeout: -time.Second, CAFile: "/nonexistent/ca.pem",
			Auth: AuthOptions{Mechanism: "cram-md5"},
		},
		From: "not an address", ReplyTo: "Name <x@y.z>", MessageIDDomain: "bad domain",
		ReferencesMax: 1, TemplateDir: "/nonexistent/templates",
		Schedule: notify.Schedule{
			MaxAttempts: -1, BackoffBase: time.Minute, BackoffMax: time.Second,
			Lease: time.Second, PollInterval: -1, ShutdownGrace: -1,
		},
	}
	err = bad.Validate()
	if err == nil {
		t.Fatal("bad Options validated")
	}
	var keys []string
	for _, line := range strings.Split(err.Error(), "\n") {
		k, _, _ := strings.Cut(line, ":")
		keys = append(keys, k)
	}
	for _, key := range []string{"smtp.port", "smtp.security", "smtp.timeout", "smtp.caFile", "smtp.auth.mechanism",
		"from", "replyTo", "messageIdDomain", "signer", "referencesMax", "maxAttempts", "backoffMax",
		"pollInterval", "shutdownGrace", "templateDir"} {
		if !slices.Contains(keys, key) {
			t.Errorf("no error for %s in:\n%v", key, err)
		}
	}

	o := goodOptions()
	o.Lease = 10 * time.Second // default smtp.timeout is 30s
	if err := o.Validate(); err == nil || !strings.HasPrefix(err.Error(), "lease: 10s must exceed smtp.timeout 30s") {
		t.Errorf("short lease: %v", err)
	}

	for _, tc := range []struct {
		auth AuthOptions
		want string
	}{
		{AuthOptions{Mechanism: AuthPlain}, "smtp.auth.username"},
		{AuthOptions{Mechanism: AuthLogin, Username: "u"}, "smtp.auth.password"},
		{AuthOptions{Mechanism: AuthXOAUTH2, Username: "u"}, "exactly one of token, tokenFile, tokenCommand (0 set)"},
		{AuthOptions{Mechanism: AuthXOAUTH2, Username: "u", Token: "a", TokenFile: "/etc/hostname"}, "(2 set)"},
		{AuthOptions{Mechanism: AuthXOAUTH2, Username: "u", TokenFile: "/nonexistent/token"}, "smtp.auth.tokenFile"},
		{AuthOptions{Mechanism: AuthXOAUTH2, Username: "u", TokenCommand: []string{"/nonexistent/refresh"}}, "smtp.auth.tokenCommand"},
		{AuthOptions{Username: "u", Password: "p"}, "credentials are set but no mechanism"},
	} {
		o := goodOptions()
		o.SMTP.Auth = tc.auth
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("auth %+v: %v, want %q", tc.auth, err, tc.want)
		}
	}
}

func goodOptions() Options {
	return Options{SMTP: SMTPOptions{Host: "smtp.example.com"}, From: "Support <support@example.com>", Signer: replytoken.New([]byte("k"))}
}

func TestDefaults(t *testing.T) {
	c, err := goodOptions().compile()
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTP.Security != SecurityStartTLS || c.SMTP.Port != 587 || c.SMTP.Timeout != 30*time.Second || c.SMTP.HELO != "example.com" {
		t.Errorf("smtp defaults %+v", c.SMTP)
	}
	if c.MaxAttempts != 8 || c.BackoffBase != 30*time.Second || c.BackoffMax != time.Hour || c.Lease != 2*time.Minute ||
		c.PollInterval != 30*time.Second || c.ShutdownGrace != 10*time.Second || c.ReferencesMax != 10 {
		t.Errorf("queue defaults %+v", c.Options)
	}
	if c.replyBase != "support@example.com" || c.MessageIDDomain != "example.com" || c.NoTicketAck || c.tmpl.html == nil {
		t.Errorf("mail defaults: reply %q, domain %q, noack %v", c.replyBase, c.MessageIDDomain, c.NoTicketAck)
	}
	o := goodOptions()
	o.SMTP.Security = SecurityTLS
	if c, _ := o.compile(); c.SMTP.Port != 465 {
		t.Errorf("tls port %d", c.SMTP.Port)
	}
}

func TestSubjectAndThreadHelpers(t *testing.T) {
	for in, want := range map[string]string{
		"Printer on fire":                "Printer on fire",
		"Re: [#12] Printer on fire":      "Printer on fire",
		"RE: AW:  Fwd: [#3]   Re[2]: x ": "x",
		"[#7]":                           "(no subject)",
		"Re: the [#7] stays inside":      "the [#7] stays inside",
		"Reply hazy":                     "Reply hazy",
	} {
		if got := cleanSubject(in); got != want {
			t.Errorf("cleanSubject(%q) = %q, want %q", in, got, want)
		}
	}
	if s := subjectFor(KindAck, 5, "x"); s != "[#5] x" {
		t.Errorf("ack subject %q", s)
	}
	if s := subjectFor(KindStatus, 5, "x"); s != "Re: [#5] x" {
		t.Errorf("status subject %q", s)
	}

	ids := []string{"<a@x>", "<b@x>", "<OWN@x>", "<c@x>"}
	if got := threadBefore(ids, "<own@X>"); !slices.Equal(got, ids[:2]) {
		t.Errorf("threadBefore recorded = %v", got)
	}
	if got := threadBefore(ids, "<new@x>"); !slices.Equal(got, ids) {
		t.Errorf("threadBefore new = %v", got)
	}
	long := []string{"<1>", "<2>", "<3>", "<4>", "<5>", "<6>"}
	if got := references(long, 4); !slices.Equal(got, []string{"<1>", "<4>", "<5>", "<6>"}) {
		t.Errorf("references = %v", got)
	}
	if got := references(long[:3], 4); !slices.Equal(got, long[:3]) {
		t.Errorf("short references = %v", got)
	}
}
