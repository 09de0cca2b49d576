package email

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/ticketd/ticketd/internal/replytoken"
	"github.com/ticketd/ticketd/notify"
)

// DefaultShutdownGrace is how long a send in flight may finish on shutdown
// when Options.ShutdownGrace is zero.
const DefaultShutdownGrace = notify.DefaultShutdownGrace

// Options configures the email sink: the Adapter, and the retry settings
// of its delivery runner (RunnerOptions). The zero value of every field is its
// documented default, except the three required ones: SMTP.Host, From and
// Signer. Key paths in Validate's errors are the yaml names below; cmd
// prefixes them with where the block sits in its file (notify.email).
type Options struct {
	SMTP SMTPOptions `yaml:"smtp"`

	// From is the sender of every notification, "Name <addr>" or "addr".
	// Required.
	From string `yaml:"from"`
	// ReplyTo is the support mailbox that inbound mail is read from; the
	// Reply-To of every notification is this address with the ticket's
	// signed token (support+TOKEN@example.com). Default: From's address.
	ReplyTo string `yaml:"replyTo"`
	// MessageIDDomain is the right-hand side of generated Message-IDs.
	// Default: the domain of From.
	MessageIDDomain string `yaml:"messageIdDomain"`
	// Signer makes the reply tokens; cmd builds it from the secret that
	// ingest checks tokens with. Required.
	Signer *replytoken.Signer `yaml:"-"`

	// TemplateDir holds operator templates that replace the embedded
	// defaults file by file: ack.txt, ack.html, response.txt,
	// response.html, status.txt, status.html. Empty: defaults only.
	TemplateDir string `yaml:"templateDir"`
	// TextOnly sends text/plain only, without the HTML alternative.
	TextOnly bool `yaml:"textOnly"`
	// NoTicketAck turns off the acknowledgement mailed to a customer who
	// opens a ticket (default: acknowledgements on).
	NoTicketAck bool `yaml:"noTicketAck"`
	// ReferencesMax caps the Message-IDs in References: the thread's first
	// and its last ReferencesMax-1. Default 10.
	ReferencesMax int `yaml:"referencesMax"`

	// Schedule is the delivery runner's retry settings, keys at this
	// level (maxAttempts, backoffBase, ...). Its lease must exceed
	// SMTP.Timeout, or a slow send's delivery is claimed again while it runs.
	notify.Schedule `yaml:",inline"`
}

// Security is how the SMTP connection is protected.
type Security string

// The security modes.
const (
	// SecurityStartTLS: plain connect, then mandatory STARTTLS (port 587).
	SecurityStartTLS Security = "starttls"
	// SecurityTLS: TLS from the first byte (SMTPS, port 465).
	SecurityTLS Security = "tls"
	// SecurityPlain: no encryption; refused for hosts other than loopback
	// unless SMTPOptions.AllowInsecure is set (port 25).
	SecurityPlain Security = "plain"
)

// SMTPOptions says how to reach the submission server.
type SMTPOptions struct {
	// Host of the submission server. Required.
	Host string `yaml:"host"`
	// Port; default 587 for starttls, 465 for tls, 25 for plain.
	Port int `yaml:"port"`
	// Security: starttls (default), tls or plain.
	Security Security `yaml:"security"`
	// AllowInsecure permits plain SMTP (and credentials over it) to a host
	// that is not loopback.
	AllowInsecure bool `yaml:"allowInsecure"`
	// CAFile is a PEM bundle of extra roots to trust (a private relay's
	// CA); the system roots stay trusted.
	CAFile string `yaml:"caFile"`
	// HELO is the name this client gives in EHLO. Default: MessageIDDomain.
	HELO string `yaml:"helo"`
	// Timeout bounds one whole send (connect, TLS, AUTH, transaction).
	// Default 30s.
	Timeout time.Duration `yaml:"timeout"`

	Auth AuthOptions `yaml:"auth"`
}

// Mechanism is an SMTP AUTH mechanism.
type Mechanism string

// The supported mechanisms.
const (
	AuthNone    Mechanism = ""
	AuthPlain   Mechanism = "plain"
	AuthLogin   Mechanism = "login"
	AuthXOAUTH2 Mechanism = "xoauth2"
)

// AuthOptions are the SMTP credentials. Secrets come from cmd's secret
// handling (FOO or FOO_FILE) except the XOAUTH2 token file and command,
// which are read again for every send so a refreshed token is used.
type AuthOptions struct {
	// Mechanism: empty (no AUTH), plain, login or xoauth2.
	Mechanism Mechanism `yaml:"mechanism"`
	Username  string    `yaml:"username"`
	// Password for plain and login.
	Password string `yaml:"password"`
	// For xoauth2 exactly one of: Token (fixed), TokenFile (re-read per
	// send), TokenCommand (argv run per send; its trimmed stdout is the
	// token).
	Token        string   `yaml:"token"`
	TokenFile    string   `yaml:"tokenFile"`
	TokenCommand []string `yaml:"tokenCommand"`
}

// config is Options with defaults applied and everything parsed.
type config struct {
	Options
	from      *mail.Address
	replyBase string
	roots     *x509.CertPool
	tmpl      *templates
}

// Validate reports every bad value at once, each with its key path.
// It also parses the override templates, so a broken template is found at
// startup (and by check-config), not when the first mail goes out.
func (o Options) Validate() error {
	_, err := o.compile()
	return err
}

func (o Options) withDefaults() Options {
	if o.SMTP.Security == "" {
		o.SMTP.Security = SecurityStartTLS
	}
	if o.SMTP.Port == 0 {
		switch o.SMTP.Security {
		case SecurityTLS:
			o.SMTP.Port = 465
		case SecurityPlain:
			o.SMTP.Port = 25
		default:
			o.SMTP.Port = 587
		}
	}
	if o.SMTP.Timeout == 0 {
		o.SMTP.Timeout = 30 * time.Second
	}
	if o.ReferencesMax == 0 {
		o.ReferencesMax = 10
	}
	// The retry settings are the delivery runner's, with its defaults.
	o.Schedule = o.Schedule.WithDefaults()
	return o
}

func (o Options) compile() (*config, error) {
	o = o.withDefaults()
	c := &config{Options: o}
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}

	s := o.SMTP
	if strings.TrimSpace(s.Host) == "" {
		bad("smtp.host", "required: the submission server's host name")
	}
	if s.Port < 1 || s.Port > 65535 {
		bad("smtp.port", "%d is not a port (1-65535)", s.Port)
	}
	switch s.Security {
	case SecurityStartTLS, SecurityTLS:
	case SecurityPlain:
		if s.Host != "" && !s.AllowInsecure && !isLoopback(s.Host) {
			bad("smtp.security", "plain SMTP to %q, which is not loopback, sends mail and credentials unencrypted; use starttls or tls, or set smtp.allowInsecure", s.Host)
		}
	default:
		bad("smtp.security", "%q: want starttls, tls or plain", s.Security)
	}
	if s.Timeout < 0 {
		bad("smtp.timeout", "%v is negative", s.Timeout)
	}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			bad("smtp.caFile", "%v", err)
		} else {
			roots, err := x509.SystemCertPool()
			if err != nil || roots == nil {
				roots = x509.NewCertPool()
			}
			if !roots.AppendCertsFromPEM(pem) {
				bad("smtp.caFile", "%s holds no PEM certificate", s.CAFile)
			}
			c.roots = roots
		}
	}

	a := s.Auth
	switch a.Mechanism {
	case AuthNone:
		if a.Username != "" || a.Password != "" || a.Token != "" || a.TokenFile != "" || len(a.TokenCommand) > 0 {
			bad("smtp.auth.mechanism", "credentials are set but no mechanism: want plain, login or xoauth2")
		}
	case AuthPlain, AuthLogin:
		if a.Username == "" {
			bad("smtp.auth.username", "required for %s", a.Mechanism)
		}
		if a.Password == "" {
			bad("smtp.auth.password", "required for %s", a.Mechanism)
		}
	case AuthXOAUTH2:
		if a.Username == "" {
			bad("smtp.auth.username", "required for xoauth2")
		}
		n := 0
		if a.Token != "" {
			n++
		}
		if a.TokenFile != "" {
			n++
			if _, err := os.Stat(a.TokenFile); err != nil {
				bad("smtp.auth.tokenFile", "%v", err)
			}
		}
		if len(a.TokenCommand) > 0 {
			n++
			if _, err := exec.LookPath(a.TokenCommand[0]); err != nil {
				bad("smtp.auth.tokenCommand", "%v", err)
			}
		}
		if n != 1 {
			bad("smtp.auth", "xoauth2 needs exactly one of token, tokenFile, tokenCommand (%d set)", n)
		}
	default:
		bad("smtp.auth.mechanism", "%q: want plain, login or xoauth2 (or empty for none)", a.Mechanism)
	}

	if strings.TrimSpace(o.From) == "" {
		bad("from", "required: the sender address, like \"Support <support@example.com>\"")
	} else if from, err := mail.ParseAddress(o.From); err != nil {
		bad("from", "%q is not an address: %v", o.From, err)
	} else {
		c.from = from
	}
	c.replyBase = o.ReplyTo
	if c.replyBase == "" && c.from != nil {
		c.replyBase = c.from.Address
	}
	if o.ReplyTo != "" {
		if a, err := mail.ParseAddress(o.ReplyTo); err != nil || a.Name != "" {
			bad("replyTo", "%q: want a bare address like support@example.com", o.ReplyTo)
		}
	}
	if c.MessageIDDomain == "" && c.from != nil {
		_, c.MessageIDDomain, _ = strings.Cut(c.from.Address, "@")
	}
	if o.MessageIDDomain != "" && (strings.ContainsAny(o.MessageIDDomain, "<>@ \t\r\n") || !strings.Contains(o.MessageIDDomain, ".") && o.MessageIDDomain != "localhost") {
		bad("messageIdDomain", "%q: want a domain name like example.com", o.MessageIDDomain)
	}
	if c.SMTP.HELO == "" {
		c.SMTP.HELO = c.MessageIDDomain
	}
	if o.Signer == nil {
		bad("signer", "required: the reply-token signer (built from the reply token secret)")
	}

	if o.ReferencesMax < 2 {
		bad("referencesMax", "%d: want at least 2 (the thread's first and last)", o.ReferencesMax)
	}
	// maxAttempts, backoffBase, backoffMax, pollInterval, shutdownGrace:
	// the runner's own checks, whose keys are these options' names.
	if err := o.Schedule.Options(Sink).Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.Lease <= c.SMTP.Timeout {
		bad("lease", "%v must exceed smtp.timeout %v, or a slow send's delivery is claimed again while it runs", o.Lease, c.SMTP.Timeout)
	}

	tmpl, err := loadTemplates(o.TemplateDir, !o.TextOnly)
	if err != nil {
		bad("templateDir", "%v", err)
	}
	c.tmpl = tmpl

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// isLoopback reports whether host names this machine: localhost or a
// loopback IP. Names are not resolved; "localhost" is trusted by name.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
