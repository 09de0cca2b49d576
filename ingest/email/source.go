package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/robfig/cron/v3"

	"github.com/ticketd/ticketd/internal/replytoken"
	"github.com/ticketd/ticketd/store"
)

// TLS modes of an Account.
const (
	TLSImplicit = "tls"
	TLSStart    = "starttls"
	TLSPlain    = "plain"
)

// Unknown-sender policies.
const (
	PolicyCreate = "create"
	PolicyReject = "reject"
)

// Defaults used for zero Options fields.
const (
	DefaultPollSchedule        = "@every 1m"
	DefaultMaxMessageBytes     = 25 << 20
	DefaultQuarantineRawBytes  = 1 << 20
	DefaultCategory            = "Support"
	DefaultRateLimitPerHour    = 20
	DefaultReconnectMin        = time.Second
	DefaultReconnectMax        = 5 * time.Minute
	DefaultShutdownGrace       = 15 * time.Second
	DefaultMaxDeliveryAttempts = 5
	DefaultDeliveryTimeout     = 2 * time.Minute
)

// Account is one IMAP login and the mailboxes read through it.
type Account struct {
	// Name identifies the account in logs and in the saved mailbox state
	// ("name/mailbox"); empty means "username@host". Changing it makes
	// ticketd read the account's mailboxes again from the start (safe: every
	// message is deduplicated by its Message-ID).
	Name string `yaml:"name"`
	Host string `yaml:"host"`
	// Port; 0 means 993 for tls and 143 for starttls and plain.
	Port int `yaml:"port"`
	// TLS is "tls" (implicit TLS, the default), "starttls" or "plain".
	// Plain is only allowed to a loopback address unless AllowInsecure.
	TLS           string `yaml:"tls"`
	AllowInsecure bool   `yaml:"allowInsecure"`
	// TLSConfig overrides the TLS client configuration (custom roots in
	// tests); nil means the system roots and ServerName Host.
	TLSConfig *tls.Config `yaml:"-"`

	Username string `yaml:"username"`
	// Auth is "login" (default), "xoauth2" (Gmail, Microsoft 365) or
	// "oauthbearer" (RFC 7628).
	Auth     string `yaml:"auth"`
	Password string `yaml:"password"`
	// The OAuth access token for xoauth2/oauthbearer, first match wins:
	// TokenCommand is run through /bin/sh at every connect and its trimmed
	// stdout used; TokenFile is re-read at every connect (a sidecar keeps it
	// fresh); Token is used as is.
	Token        string `yaml:"token"`
	TokenFile    string `yaml:"tokenFile"`
	TokenCommand string `yaml:"tokenCommand"`

	// Mailboxes to read; empty means ["INBOX"]. Each gets its own
	// connection (IDLE watches one selected mailbox).
	Mailboxes []string `yaml:"mailboxes"`
	// ProcessedMailbox, when set, receives every message once stored or
	// deliberately ignored (created if missing). Otherwise messages stay
	// where they are, flagged \Seen.
	ProcessedMailbox string `yaml:"processedMailbox"`
	// QuarantineMailbox, when set, receives quarantined messages; otherwise
	// they go where processed ones go.
	QuarantineMailbox string `yaml:"quarantineMailbox"`
}

func (a *Account) name() string {
	if a.Name != "" {
		return a.Name
	}
	return a.Username + "@" + a.Host
}

func (a *Account) tlsMode() string {
	if a.TLS == "" {
		return TLSImplicit
	}
	return a.TLS
}

func (a *Account) port() int {
	switch {
	case a.Port != 0:
		return a.Port
	case a.tlsMode() == TLSImplicit:
		return 993
	}
	return 143
}

func (a *Account) auth() string {
	if a.Auth == "" {
		return AuthLogin
	}
	return a.Auth
}

func (a *Account) mailboxes() []string {
	if len(a.Mailboxes) == 0 {
		return []string{"INBOX"}
	}
	return a.Mailboxes
}

// Options configures a Source. The zero value of every field means the
// documented default.
type Options struct {
	Accounts []Account `yaml:"accounts"`
	// LMTP is the listener a local mail server hands mail to; with it,
	// Accounts may be empty.
	LMTP LMTPOptions `yaml:"lmtp"`

	// PollSchedule is a robfig/cron spec ("@every 1m", "*/5 * * * *") on
	// which every mailbox is checked even when IDLE is quiet; default
	// "@every 1m".
	PollSchedule string `yaml:"pollSchedule"`
	// Idle uses IMAP IDLE when the server offers it; nil means true.
	Idle *bool `yaml:"idle"`
	// SkipExisting: on a mailbox never read before, start after its current
	// last message instead of importing everything in it. Default false.
	SkipExisting bool `yaml:"skipExisting"`

	// MaxMessageBytes: larger messages (by RFC822.SIZE, before download)
	// are quarantined; default 25 MiB.
	MaxMessageBytes int64 `yaml:"maxMessageBytes"`
	// MaxAttachmentBytes: larger attachments are left out (the text notes
	// it); default 10 MiB (a MongoDB document holds at most 16 MiB).
	MaxAttachmentBytes int64 `yaml:"maxAttachmentBytes"`
	// QuarantineRawBytes caps the raw bytes kept with a quarantined
	// message; default 1 MiB.
	QuarantineRawBytes int64 `yaml:"quarantineRawBytes"`

	// DefaultCategory of tickets opened by mail; default "Support".
	DefaultCategory string `yaml:"defaultCategory"`
	// DomainTeams maps a sender's domain (lowercase, "example.com") to the
	// team of the customers it creates; others get a personal team.
	DomainTeams map[string]string `yaml:"domainTeams"`
	// OwnAddresses are ticketd's own addresses (the support address, the
	// SMTP From, aliases): mail from them never opens a ticket. The
	// ReplyBaseAddress and its +token forms are always included.
	OwnAddresses []string `yaml:"ownAddresses"`
	// ReplyBaseAddress is the address reply tokens are attached to
	// (support@example.com -> support+TOKEN@example.com).
	ReplyBaseAddress string `yaml:"replyBaseAddress"`
	// ReplySigner checks reply tokens; nil disables token threading.
	ReplySigner *replytoken.Signer `yaml:"-"`

	// UnknownSenderPolicy is "create" (default: anyone may open a ticket)
	// or "reject" (only known customers and AllowDomains may). DenyDomains
	// always wins, for new tickets and replies alike.
	UnknownSenderPolicy string   `yaml:"unknownSenderPolicy"`
	AllowDomains        []string `yaml:"allowDomains"`
	DenyDomains         []string `yaml:"denyDomains"`
	// RateLimitPerHour caps new tickets per sender per hour (replies to
	// existing tickets are not limited); 0 means 20, negative means no limit.
	// The store keeps the count, per clock hour, for every daemon together.
	RateLimitPerHour int `yaml:"rateLimitPerHour"`

	// ReconnectMin and ReconnectMax bound the exponential backoff (with
	// jitter) after a dropped connection or a store outage; default 1s, 5m.
	ReconnectMin time.Duration `yaml:"reconnectMin"`
	ReconnectMax time.Duration `yaml:"reconnectMax"`
	// ShutdownGrace is how long Run lets the message in flight finish after
	// ctx is cancelled before closing its connection; default 15s.
	ShutdownGrace time.Duration `yaml:"shutdownGrace"`
	// MaxDeliveryAttempts: a message the store keeps refusing while it
	// takes other writes is quarantined after this many tries; default 5.
	// Failures while the store is down or refuses every write (disk full)
	// never count.
	MaxDeliveryAttempts int `yaml:"maxDeliveryAttempts"`

	// MailboxLeaseTTL is how long a mailbox stays with a daemon that died
	// before another daemon of the deployment takes it over (see lease.go);
	// renewed every third of it. Default DefaultMailboxLeaseTTL.
	MailboxLeaseTTL time.Duration `yaml:"mailboxLeaseTTL"`

	// Logger; nil means slog.Default(). A component attribute is added.
	Logger *slog.Logger `yaml:"-"`
}

func (o *Options) leaseRenew() time.Duration { return o.MailboxLeaseTTL / 3 }

func (o *Options) idle() bool { return o.Idle == nil || *o.Idle }

// Validate reports every bad value at once, each with its key path.
func (o *Options) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if len(o.Accounts) == 0 && o.LMTP.Listen == "" {
		bad("accounts", "at least one account is required (or lmtp.listen)")
	}
	o.LMTP.validate(bad)
	names := map[string]int{}
	for i := range o.Accounts {
		a := &o.Accounts[i]
		p := fmt.Sprintf("accounts[%d]", i)
		if strings.TrimSpace(a.Host) == "" {
			bad(p+".host", "required")
		}
		if a.Port < 0 || a.Port > 65535 {
			bad(p+".port", "%d is not a TCP port (1-65535, 0 for the default)", a.Port)
		}
		switch a.tlsMode() {
		case TLSImplicit, TLSStart:
		case TLSPlain:
			if !a.AllowInsecure && a.Host != "" && !isLoopbackHost(a.Host) {
				bad(p+".tls", "plain (unencrypted) IMAP to %q is refused: it is not a loopback address; use tls or starttls, or set allowInsecure: true", a.Host)
			}
		default:
			bad(p+".tls", "%q is not one of tls, starttls, plain", a.TLS)
		}
		if strings.TrimSpace(a.Username) == "" {
			bad(p+".username", "required")
		}
		switch a.auth() {
		case AuthLogin:
			if a.Password == "" {
				bad(p+".password", "required for auth login")
			}
		case AuthXOAuth2, AuthOAuthBearer:
			if a.Token == "" && a.TokenFile == "" && a.TokenCommand == "" {
				bad(p+".token", "auth %s needs token, tokenFile or tokenCommand", a.Auth)
			}
		default:
			bad(p+".auth", "%q is not one of login, xoauth2, oauthbearer", a.Auth)
		}
		for j, m := range a.Mailboxes {
			if strings.TrimSpace(m) == "" {
				bad(fmt.Sprintf("%s.mailboxes[%d]", p, j), "empty mailbox name")
			}
			if m == a.ProcessedMailbox || m == a.QuarantineMailbox {
				bad(fmt.Sprintf("%s.mailboxes[%d]", p, j), "%q is also the processed or quarantine mailbox", m)
			}
		}
		if prev, dup := names[a.name()]; dup {
			bad(p+".name", "%q is also the name of accounts[%d]; set distinct names", a.name(), prev)
		}
		names[a.name()] = i
	}
	if o.PollSchedule != "" {
		if _, err := cron.ParseStandard(o.PollSchedule); err != nil {
			bad("pollSchedule", "%q is not a cron spec or @every duration: %v", o.PollSchedule, err)
		}
	}
	for key, v := range map[string]int64{"maxMessageBytes": o.MaxMessageBytes, "maxAttachmentBytes": o.MaxAttachmentBytes, "quarantineRawBytes": o.QuarantineRawBytes} {
		if v < 0 {
			bad(key, "%d is negative (0 means the default)", v)
		}
	}
	if o.MailboxLeaseTTL < 0 {
		bad("mailboxLeaseTTL", "%s is negative (0 means %s)", o.MailboxLeaseTTL, DefaultMailboxLeaseTTL)
	}
	switch o.UnknownSenderPolicy {
	case "", PolicyCreate, PolicyReject:
	default:
		bad("unknownSenderPolicy", "%q is not one of create, reject", o.UnknownSenderPolicy)
	}
	for _, l := range []struct {
		key string
		v   []string
	}{{"allowDomains", o.AllowDomains}, {"denyDomains", o.DenyDomains}} {
		for i, d := range l.v {
			if d = strings.TrimSpace(d); d == "" || strings.ContainsAny(d, "@ ") {
				bad(fmt.Sprintf("%s[%d]", l.key, i), "%q is not a domain name", l.v[i])
			}
		}
	}
	for d, team := range o.DomainTeams {
		if strings.TrimSpace(d) == "" || strings.ContainsAny(d, "@ ") {
			bad("domainTeams", "%q is not a domain name", d)
		}
		if strings.TrimSpace(team) == "" {
			bad("domainTeams."+d, "empty team")
		}
		if store.ReservedTeam(team) {
			bad("domainTeams."+d, "%q is reserved for personal teams, which the store assigns", team)
		}
	}
	for i, a := range o.OwnAddresses {
		if !strings.Contains(a, "@") {
			bad(fmt.Sprintf("ownAddresses[%d]", i), "%q is not a mail address", a)
		}
	}
	if o.ReplyBaseAddress != "" && !strings.Contains(o.ReplyBaseAddress, "@") {
		bad("replyBaseAddress", "%q is not a mail address", o.ReplyBaseAddress)
	}
	if o.ReplySigner != nil && o.ReplyBaseAddress == "" {
		bad("replyBaseAddress", "required when reply tokens are checked")
	}
	if o.ReconnectMin < 0 || o.ReconnectMax < 0 || (o.ReconnectMax > 0 && o.ReconnectMin > o.ReconnectMax) {
		bad("reconnectMin", "%s..%s is not a valid backoff range", o.ReconnectMin, o.ReconnectMax)
	}
	if o.ShutdownGrace < 0 {
		bad("shutdownGrace", "%s is negative", o.ShutdownGrace)
	}
	if o.MaxDeliveryAttempts < 0 {
		bad("maxDeliveryAttempts", "%d is negative", o.MaxDeliveryAttempts)
	}
	return errors.Join(errs...)
}

func (o *Options) setDefaults() {
	if o.PollSchedule == "" {
		o.PollSchedule = DefaultPollSchedule
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxAttachmentBytes == 0 {
		o.MaxAttachmentBytes = DefaultMaxAttachmentBytes
	}
	if o.QuarantineRawBytes == 0 {
		o.QuarantineRawBytes = DefaultQuarantineRawBytes
	}
	if o.DefaultCategory == "" {
		o.DefaultCategory = DefaultCategory
	}
	if o.UnknownSenderPolicy == "" {
		o.UnknownSenderPolicy = PolicyCreate
	}
	if o.RateLimitPerHour == 0 {
		o.RateLimitPerHour = DefaultRateLimitPerHour
	}
	if o.ReconnectMin == 0 {
		o.ReconnectMin = DefaultReconnectMin
	}
	if o.ReconnectMax == 0 {
		o.ReconnectMax = max(DefaultReconnectMax, o.ReconnectMin)
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	if o.MaxDeliveryAttempts == 0 {
		o.MaxDeliveryAttempts = DefaultMaxDeliveryAttempts
	}
	if o.MailboxLeaseTTL == 0 {
		o.MailboxLeaseTTL = DefaultMailboxLeaseTTL
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// checkPlainRemote refuses an unencrypted connection whose peer is not a
// loopback address (a name like "localhost" may resolve anywhere).
func checkPlainRemote(a *Account, remote net.Addr) error {
	if a.AllowInsecure {
		return nil
	}
	if tcp, ok := remote.(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing plain (unencrypted) IMAP to %s: not a loopback address; use tls or starttls, or set allowInsecure", remote)
}

// Store is what the mail source needs from the store: the writes of
// deliver.go and the mailbox read positions. *store.Store satisfies it.
type Store interface {
	TicketWriter
	MailboxStates
	MailboxLeases
	// Ready fails while the store cannot be reached or refuses writes
	// (disk full): then a failed delivery is the store's, not the mail's.
	Ready(ctx context.Context) error
}

// MailboxStates keeps how far each mailbox has been read.
type MailboxStates interface {
	MailboxState(ctx context.Context, id string) (store.MailboxState, error)
	SaveMailboxState(ctx context.Context, st store.MailboxState) error
}

// Stats are the source's counters since it was made.
type Stats struct {
	Fetched     uint64 // messages downloaded (or inspected, when oversized)
	Tickets     uint64 // tickets opened
	Responses   uint64 // responses added to tickets
	Duplicates  uint64 // messages already stored (re-read after a crash or rescan)
	Ignored     uint64 // auto-replies, bounces, own mail, policy, rate limit
	Quarantined uint64 // oversized, unparsable or refused by the store
	StoreErrors uint64 // store failures that made a message wait for a retry
	Reconnects  uint64 // IMAP sessions that ended in an error
	Rescans     uint64 // UIDVALIDITY changes
}

type counters struct {
	fetched, tickets, responses, duplicates, ignored, quarantined, storeErrors, reconnects, rescans atomic.Uint64
}

// Source reads IMAP mailboxes and delivers their mail as tickets and
// responses.
type Source struct {
	opts    Options
	st      Store
	log     *slog.Logger
	d       *deliverer
	c       counters
	workers []*worker
	// lmtpTimeout, when set (tests), replaces the LMTP read and write
	// timeouts.
	lmtpTimeout time.Duration
}

// New checks o and returns a Source writing to st.
func New(st Store, o Options) (*Source, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("email source options: %w", err)
	}
	o.setDefaults()
	s := &Source{opts: o, st: st, log: o.Logger.With("component", "ingest/email")}
	s.d = newDeliverer(st, &s.opts, s.log, &s.c)
	for i := range s.opts.Accounts {
		a := &s.opts.Accounts[i]
		for _, m := range a.mailboxes() {
			s.workers = append(s.workers, &worker{
				src: s, acct: a, mailbox: m, id: a.name() + "/" + m,
				wake:     make(chan struct{}, 1),
				attempts: map[uint32]int{},
				log:      s.log.With("account", a.name(), "mailbox", m),
			})
		}
	}
	return s, nil
}

// Stats returns the counters.
func (s *Source) Stats() Stats {
	return Stats{
		Fetched: s.c.fetched.Load(), Tickets: s.c.tickets.Load(), Responses: s.c.responses.Load(),
		Duplicates: s.c.duplicates.Load(), Ignored: s.c.ignored.Load(), Quarantined: s.c.quarantined.Load(),
		StoreErrors: s.c.storeErrors.Load(), Reconnects: s.c.reconnects.Load(), Rescans: s.c.rescans.Load(),
	}
}

// Run reads every configured mailbox until ctx is cancelled, then lets the
// message in flight finish (within ShutdownGrace) and returns nil.
func (s *Source) Run(ctx context.Context) error {
	if len(s.workers) == 0 { // LMTP only: ServeLMTP takes the mail
		<-ctx.Done()
		return nil
	}
	cl := cronLogger{s.log}
	sched := cron.New(cron.WithChain(cron.Recover(cl), cron.SkipIfStillRunning(cl)), cron.WithLogger(cl))
	if _, err := sched.AddFunc(s.opts.PollSchedule, func() {
		for _, w := range s.workers {
			w.poke()
		}
	}); err != nil {
		return fmt.Errorf("email source: poll schedule %q: %w", s.opts.PollSchedule, err)
	}
	sched.Start()
	defer func() { <-sched.Stop().Done() }()

	var wg sync.WaitGroup
	for _, w := range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	s.log.Info("email source started", "mailboxes", len(s.workers), "idle", s.opts.idle(), "poll", s.opts.PollSchedule)
	wg.Wait()
	s.log.Info("email source stopped")
	return nil
}

type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.log.Debug("cron: "+msg, kv...) }
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append(kv, "err", err)...)
}

// worker reads one mailbox over its own connection.
type worker struct {
	src     *Source
	acct    *Account
	mailbox string
	id      string // the MailboxState id: account/mailbox
	log     *slog.Logger
	wake    chan struct{}
	ls      workerState // the mailbox lease (lease.go)

	// attempts counts failed deliveries per UID that are the message's
	// fault (see refusedMail), so a message the store keeps refusing is
	// quarantined instead of blocking the mailbox.
	attempts map[uint32]int
	// healthy is set once a session got through a full pass; it resets the
	// backoff.
	healthy bool
	// savedUID is the LastUID last written to the store, at savedAt.
	savedUID uint32
	savedAt  time.Time
	// unacked lists stored messages not yet flagged (and moved) on the
	// server; handledUID is the last UID handled. The read position only
	// moves past a message once it is acknowledged (see ackPending).
	unacked    []pendingAck
	handledUID uint32
}

type pendingAck struct {
	uid         uint32
	quarantined bool
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// read reads the mailbox, reconnecting with backoff, until ctx ends.
func (w *worker) read(ctx context.Context) {
	delay := w.src.opts.ReconnectMin
	for ctx.Err() == nil {
		w.healthy = false
		err := w.safeSession(ctx)
		if ctx.Err() != nil {
			return
		}
		if w.healthy {
			delay = w.src.opts.ReconnectMin
		}
		w.src.c.reconnects.Add(1)
		// Half fixed, half random: spreads reconnects of many mailboxes.
		sleep := delay/2 + rand.N(delay/2+1)
		w.log.Warn("imap session ended; reconnecting", "err", err, "retryIn", sleep.Round(time.Millisecond))
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, w.src.opts.ReconnectMax)
	}
}

func (w *worker) safeSession(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in imap session: %v", r)
		}
	}()
	return w.session(ctx)
}

// dial connects and logs in.
func (w *worker) dial(ctx context.Context) (*imapclient.Client, error) {
	a := w.acct
	addr := net.JoinHostPort(a.Host, strconv.Itoa(a.port()))
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: time.Minute}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	tlsConf := &tls.Config{}
	if a.TLSConfig != nil {
		tlsConf = a.TLSConfig.Clone()
	}
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = a.Host
	}
	opts := &imapclient.Options{
		TLSConfig: tlsConf,
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					w.poke() // EXISTS: new mail
				}
			},
		},
	}
	var c *imapclient.Client
	switch a.tlsMode() {
	case TLSImplicit:
		tc := tls.Client(conn, tlsConf)
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		c = imapclient.New(tc, opts)
	case TLSStart:
		c, err = imapclient.NewStartTLS(conn, opts)
		if err != nil {
			return nil, fmt.Errorf("starttls with %s: %w", addr, err)
		}
	default:
		if err := checkPlainRemote(a, conn.RemoteAddr()); err != nil {
			conn.Close()
			return nil, err
		}
		c = imapclient.New(conn, opts)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting from %s: %w", addr, err)
	}
	if err := w.login(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (w *worker) login(ctx context.Context, c *imapclient.Client) error {
	a := w.acct
	switch a.auth() {
	case AuthLogin:
		if err := c.Login(a.Username, a.Password).Wait(); err != nil {
			return fmt.Errorf("login as %s: %w", a.Username, err)
		}
		return nil
	default:
		sc, err := a.saslClient(ctx)
		if err != nil {
			return fmt.Errorf("authenticate as %s: %w", a.Username, err)
		}
		if err := c.Authenticate(sc); err != nil {
			if x, ok := sc.(*xoauth2Client); ok && x.serverErr != "" {
				return fmt.Errorf("authenticate as %s with %s: %w (server said %s)", a.Username, a.Auth, err, x.serverErr)
			}
			return fmt.Errorf("authenticate as %s with %s: %w", a.Username, a.Auth, err)
		}
		return nil
	}
}

// session runs one connection: select, catch up, then wait for new mail
// (IDLE or the poll schedule) and catch up again, until an error or ctx.
func (w *worker) session(ctx context.Context) error {
	c, err := w.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	// The message in flight may finish after ctx is cancelled; the
	// connection is closed after ShutdownGrace whatever happens.
	var (
		graceMu sync.Mutex
		grace   *time.Timer
		ended   bool
	)
	stop := context.AfterFunc(ctx, func() {
		graceMu.Lock()
		defer graceMu.Unlock()
		if !ended {
			grace = time.AfterFunc(w.src.opts.ShutdownGrace, func() { c.Close() })
		}
	})
	defer func() {
		stop()
		graceMu.Lock()
		ended = true
		if grace != nil {
			grace.Stop()
		}
		graceMu.Unlock()
	}()

	for _, m := range []string{w.acct.ProcessedMailbox, w.acct.QuarantineMailbox} {
		if m != "" {
			// Already existing is fine; any real problem shows at MOVE.
			_ = c.Create(m, nil).Wait()
		}
	}
	sel, err := c.Select(w.mailbox, nil).Wait()
	if err != nil {
		return fmt.Errorf("select %s: %w", w.mailbox, err)
	}
	st, err := w.src.st.MailboxState(ctx, w.id)
	if err != nil {
		return fmt.Errorf("load state of %s: %w", w.id, err)
	}
	switch {
	case st.UIDValidity == sel.UIDValidity:
	case st.UIDValidity == 0:
		st = store.MailboxState{ID: w.id, UIDValidity: sel.UIDValidity}
		if w.src.opts.SkipExisting && sel.UIDNext > 1 {
			st.LastUID = uint32(sel.UIDNext) - 1
			w.log.Info("new mailbox: skipping existing messages", "lastUid", st.LastUID)
		}
		if err := w.src.st.SaveMailboxState(ctx, st); err != nil {
			return fmt.Errorf("save state of %s: %w", w.id, err)
		}
	default:
		w.log.Warn("UIDVALIDITY changed: rescanning the whole mailbox (already stored messages are recognized by Message-ID)",
			"old", st.UIDValidity, "new", sel.UIDValidity, "lastUid", st.LastUID)
		w.src.c.rescans.Add(1)
		st = store.MailboxState{ID: w.id, UIDValidity: sel.UIDValidity}
		if err := w.src.st.SaveMailboxState(ctx, st); err != nil {
			return fmt.Errorf("save state of %s: %w", w.id, err)
		}
	}
	w.savedUID, w.savedAt = st.LastUID, time.Now()
	// Acknowledgements a dropped session did not send are forgotten: those
	// messages are read again from the saved position, and recognized.
	w.unacked, w.handledUID = w.unacked[:0], st.LastUID
	defer func() {
		if err := w.flush(ctx, &st); err != nil {
			w.log.Warn("could not save the read position; the last messages will be read again (and recognized)", "err", err)
		}
	}()
	idle := w.src.opts.idle() && (c.Caps().Has(imap.CapIdle) || c.Caps().Has(imap.CapIMAP4rev2))
	w.log.Debug("mailbox selected", "uidValidity", sel.UIDValidity, "lastUid", st.LastUID, "idle", idle)
	for {
		if err := w.drain(ctx, c, &st); err != nil {
			return err
		}
		w.healthy = true
		if ctx.Err() != nil {
			return nil
		}
		if err := w.wait(ctx, c, idle); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

var errClosed = errors.New("imap connection closed")

// logIdling is logged (debug) once the server has accepted IDLE: from then
// on it announces new mail.
const logIdling = "idling until new mail"

// wait blocks until new mail may be there: an EXISTS during IDLE, a poll
// tick, or ctx.
func (w *worker) wait(ctx context.Context, c *imapclient.Client, idle bool) error {
	if !idle {
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-c.Closed():
			return errClosed
		}
		return nil
	}
	cmd, err := c.Idle()
	if err != nil {
		return fmt.Errorf("start IDLE: %w", err)
	}
	w.log.Debug(logIdling)
	closed := false
	select {
	case <-ctx.Done():
	case <-w.wake:
	case <-c.Closed():
		closed = true
	}
	cerr := cmd.Close()
	werr := cmd.Wait()
	if closed {
		return errClosed
	}
	if cerr != nil {
		return fmt.Errorf("stop IDLE: %w", cerr)
	}
	if werr != nil {
		return fmt.Errorf("IDLE: %w", werr)
	}
	return nil
}

// msgMeta is what is known of a message before downloading it.
type msgMeta struct {
	uid  uint32
	size int64
}

// drain handles every message after st.LastUID, in UID order (see
// handleAll), until there is none left (or ctx is cancelled between two
// messages).
func (w *worker) drain(ctx context.Context, c *imapclient.Client, st *store.MailboxState) error {
	for ctx.Err() == nil {
		metas, err := w.listNew(c, w.handledUID)
		if err != nil {
			return err
		}
		if len(metas) == 0 {
			return w.checkpoint(ctx, c, st)
		}
		if err := w.handleAll(ctx, c, st, metas); err != nil {
			return err
		}
		if ctx.Err() != nil {
			// Stopping: acknowledge what is stored while the
			// connection is still there.
			return w.checkpoint(context.WithoutCancel(ctx), c, st)
		}
	}
	return nil
}

// listNew returns UID and size of every message with a UID above last.
func (w *worker) listNew(c *imapclient.Client, last uint32) ([]msgMeta, error) {
	set := imap.UIDSet{imap.UIDRange{Start: imap.UID(last + 1), Stop: 0}}
	bufs, err := c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	if err != nil {
		return nil, fmt.Errorf("list new messages in %s: %w", w.mailbox, err)
	}
	var out []msgMeta
	for _, b := range bufs {
		if uint32(b.UID) > last { // "n:*" also names the last message when n is beyond it
			out = append(out, msgMeta{uid: uint32(b.UID), size: b.RFC822Size})
		}
	}
	slices.SortFunc(out, func(a, b msgMeta) int { return int(int64(a.uid) - int64(b.uid)) })
	return out, nil
}

// handleOversize quarantines a message over MaxMessageBytes from its
// envelope and first bytes, then records it as handled (the pipeline's
// other messages have all ended). A crash between any two steps re-reads
// the message, which the idempotency keys make harmless.
func (w *worker) handleOversize(ctx context.Context, c *imapclient.Client, st *store.MailboxState, m msgMeta) error {
	o := &w.src.opts
	// The message in flight is finished even when ctx is cancelled.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultDeliveryTimeout)
	defer cancel()
	in := inbound{mailbox: w.id, uidValidity: st.UIDValidity, uid: m.uid, size: m.size}
	w.src.c.fetched.Add(1)
	raw, env, err := w.fetchHead(c, m.uid, o.QuarantineRawBytes)
	if err != nil {
		return err
	}
	if raw == nil && env == nil {
		return w.advance(mctx, c, st, m.uid) // expunged meanwhile
	}
	in.raw = raw
	reason := fmt.Sprintf("message is %d bytes, over maxMessageBytes %d", m.size, o.MaxMessageBytes)
	res, err := w.src.d.quarantine(mctx, in, reason, env)
	if err != nil {
		return w.storeFailed(err, m.uid, false)
	}
	delete(w.attempts, m.uid)
	w.unacked = append(w.unacked, pendingAck{m.uid, res.Kind == KindQuarantined})
	return w.advance(mctx, c, st, m.uid)
}

// refusedMail says whether a failed delivery counts against the mail
// toward quarantining it: only when the store works (it answers and takes
// other writes) and still fails this message. An outage or a store that
// refuses every write (disk full, read-only) is nobody's fault; counting
// it would quarantine good mail.
func (w *worker) refusedMail(ctx context.Context, err error) bool {
	if errors.Is(err, store.ErrUnavailable) || ctx.Err() != nil {
		return false
	}
	return w.src.st.Ready(ctx) == nil
}

// storeFailed counts a failed store write, and an attempt against the
// message when it was refused (see refusedMail).
func (w *worker) storeFailed(err error, uid uint32, refused bool) error {
	w.src.c.storeErrors.Add(1)
	if refused {
		w.attempts[uid]++
	}
	return fmt.Errorf("store message uid %d of %s (will retry): %w", uid, w.id, err)
}

// The read position is saved after every stateSaveEvery messages, after
// stateSaveInterval, whenever a mailbox is caught up, and when a session
// ends. It never runs ahead of what is stored and acknowledged; after a
// crash at most stateSaveEvery messages are read again, and recognized.
const (
	stateSaveEvery    = 16
	stateSaveInterval = 2 * time.Second
)

// advance records that every message up to uid is handled (stored, or
// gone). Every stateSaveEvery messages or stateSaveInterval, the handled
// messages are acknowledged on the server in one command and the read
// position saved: it never runs ahead of what is stored and acknowledged.
func (w *worker) advance(ctx context.Context, c *imapclient.Client, st *store.MailboxState, uid uint32) error {
	w.handledUID = uid
	if len(w.unacked) == 0 {
		st.LastUID = uid
	}
	if uid-w.savedUID >= stateSaveEvery || time.Since(w.savedAt) >= stateSaveInterval {
		return w.checkpoint(ctx, c, st)
	}
	return nil
}

// checkpoint acknowledges what is pending and saves the read position.
func (w *worker) checkpoint(ctx context.Context, c *imapclient.Client, st *store.MailboxState) error {
	if err := w.ackPending(c, st); err != nil {
		return err
	}
	return w.flush(ctx, st)
}

// ackPending flags every stored message \Seen with one command and moves
// them with one per destination, then moves the read position past them.
// Until then a crash or a dropped connection makes them be read again, and
// recognized.
func (w *worker) ackPending(c *imapclient.Client, st *store.MailboxState) error {
	if len(w.unacked) == 0 {
		return nil
	}
	var all imap.UIDSet
	moves := map[string]imap.UIDSet{}
	for _, a := range w.unacked {
		all.AddNum(imap.UID(a.uid))
		dest := w.acct.ProcessedMailbox
		if a.quarantined && w.acct.QuarantineMailbox != "" {
			dest = w.acct.QuarantineMailbox
		}
		if dest != "" {
			set := moves[dest]
			set.AddNum(imap.UID(a.uid))
			moves[dest] = set
		}
	}
	if err := c.Store(all, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		return fmt.Errorf("flag %v of %s seen: %w", all, w.mailbox, err)
	}
	for dest, set := range moves {
		if _, err := c.Move(set, dest).Wait(); err != nil {
			var refused *imap.Error
			if !errors.As(err, &refused) {
				return fmt.Errorf("move %v of %s to %s: %w", set, w.mailbox, dest, err)
			}
			// The server refuses the move (no such mailbox, no right): a
			// configuration problem that retrying cannot fix. The mail is
			// stored and flagged; leave it where it is rather than read it
			// again forever.
			w.log.Error("cannot move processed mail; it stays in the mailbox, flagged \\Seen. Check processedMailbox/quarantineMailbox",
				"to", dest, "uids", set.String(), "err", err)
		}
	}
	w.unacked = w.unacked[:0]
	st.LastUID = w.handledUID
	return nil
}

// flush saves the read position if it moved.
func (w *worker) flush(ctx context.Context, st *store.MailboxState) error {
	if st.LastUID == w.savedUID {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := w.src.st.SaveMailboxState(ctx, *st); err != nil {
		return fmt.Errorf("save state of %s: %w", w.id, err)
	}
	w.savedUID, w.savedAt = st.LastUID, time.Now()
	return nil
}

// fetchBody downloads a whole message without setting \Seen; nil when the
// message is gone. The message is read into one buffer sized from its
// literal's announced size (at most limit), not grown by doubling: the
// raw message stays the only copy of a big mail in memory.
func (w *worker) fetchBody(c *imapclient.Client, uid uint32, limit int64) ([]byte, error) {
	sec := &imap.FetchItemBodySection{Peek: true}
	cmd := c.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sec}})
	var raw []byte
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var got imap.UID
		var body []byte
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				got = item.UID
			case imapclient.FetchItemDataBodySection:
				b, err := readLiteral(item.Literal, limit)
				if err != nil {
					_ = cmd.Close()
					return nil, fmt.Errorf("fetch uid %d of %s: %w", uid, w.mailbox, err)
				}
				body = b
			}
		}
		if uint32(got) == uid {
			raw = body
			if raw == nil {
				raw = []byte{}
			}
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, fmt.Errorf("fetch uid %d of %s: %w", uid, w.mailbox, err)
	}
	return raw, nil
}

// readLiteral reads a fetched literal into a buffer of its announced
// size, capped by limit; only a literal longer than that grows it.
func readLiteral(lit imap.LiteralReader, limit int64) ([]byte, error) {
	if lit == nil {
		return []byte{}, nil
	}
	buf := make([]byte, max(0, min(lit.Size(), limit)))
	n, err := io.ReadFull(lit, buf)
	buf = buf[:n]
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return buf, nil
	case err != nil:
		return nil, err
	}
	rest, err := io.ReadAll(lit)
	if err != nil {
		return nil, err
	}
	return append(buf, rest...), nil
}

// fetchHead downloads the envelope and the first limit bytes of a message.
func (w *worker) fetchHead(c *imapclient.Client, uid uint32, limit int64) ([]byte, *imap.Envelope, error) {
	sec := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: limit}}
	bufs, err := c.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{UID: true, Envelope: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		return nil, nil, fmt.Errorf("fetch head of uid %d of %s: %w", uid, w.mailbox, err)
	}
	for _, b := range bufs {
		if uint32(b.UID) == uid {
			raw := b.FindBodySection(sec)
			if raw == nil {
				raw = []byte{}
			}
			return raw, b.Envelope, nil
		}
	}
	return nil, nil, nil
}
