// Package slackfake is an in-process fake Slack for tests: the Web API over
// httptest, speaking Slack's wire format so that a real slack-go client works
// against it, and a Socket Mode WebSocket endpoint that apps.connections.open
// points at.
//
//	f := slackfake.New(t)
//	api := slack.New(slackfake.BotToken, slack.OptionAPIURL(f.APIURL()),
//		slack.OptionAppLevelToken(slackfake.AppToken))
//
// Everything the fake receives is recorded in order (Calls, Acks), and tests
// wait for a condition on that record (WaitFor, WaitCalls, WaitAck, Until):
// every state change wakes the waiters, so no test needs a sleep.
//
// Knobs make the next calls of a method fail the ways Slack fails: a Slack
// error string (FailNext), HTTP 429 with Retry-After (RateLimitNext), HTTP 5xx
// (ServerErrorNext), a connection closed without an answer (DropNext), and a
// closed port (Refuse, Restore).
package slackfake

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Identities of the fake workspace and its app. Tokens are checked: a client
// with another token gets invalid_auth, as from Slack.
const (
	BotToken    = "xoxb-fake-bot-token"
	AppToken    = "xapp-fake-app-token"
	TeamID      = "T0FAKE"
	TeamDomain  = "fake"
	AppID       = "A0FAKE"
	BotUserID   = "U0BOT"
	BotID       = "B0BOT"
	BotName     = "ticketd"
	ChannelID   = "C0AGENTS" // the agents' channel, known from the start
	ChannelName = "support-agents"

	// AnyMethod as the method of a knob makes it apply to every method.
	AnyMethod = "*"
	// UploadMethod names the upload URL that files.getUploadURLExternal hands out,
	// for knobs and in Calls.
	UploadMethod = "upload"
	// SocketMethod names Socket Mode WebSocket dials, for knobs (DropNext,
	// ServerErrorNext) and in Calls.
	SocketMethod = "socket"
)

// DefaultTimeout bounds every Wait*: a condition that does not come true by then
// fails the test, naming what was awaited.
const DefaultTimeout = 15 * time.Second

// Call is one request the fake received, in arrival order.
type Call struct {
	Seq    int
	At     time.Time
	Method string     // e.g. "chat.postMessage"; UploadMethod; SocketMethod
	Params url.Values // form or query values; for a JSON body, its top-level fields as strings
	Token  string     // from the form's token or the Authorization: Bearer header
	Body   []byte     // the raw body (JSON methods, uploads)
	Status int        // HTTP status answered
	Error  string     // Slack error answered with ok:false, "" on success
}

// User is a member of the fake workspace, answered by users.info.
type User struct {
	ID       string
	TeamID   string // defaults to TeamID; another team makes an external (Slack Connect) user
	Name     string // handle; defaults to the ID in lower case
	RealName string
	Email    string
	IsBot    bool
	BotID    string
	Deleted  bool
}

// Fake is the fake Slack. Create it with New; it stops when the test ends.
type Fake struct {
	srv  *httptest.Server
	lis  *switchListener
	addr string

	// PingInterval is how often the Socket Mode endpoint sends WebSocket pings
	// (slack-go reconnects when none came for its ping interval, 30 s by default).
	// Set it before the first connection.
	PingInterval time.Duration
	// Timeout bounds every Wait*; DefaultTimeout unless set.
	Timeout time.Duration

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every state change
	calls    []Call
	knobs    map[string][]knob
	users    map[string]User
	channels map[string]*channel
	files    map[string]*File
	tsBase   int64 // microseconds; every ts is tsBase plus a counter
	seq      int
	ephemera []Ephemeral
	echo     bool

	conns    []*socketConn
	acks     []Ack
	sent     map[string]Envelope // envelopes pushed, by id, for Redeliver
	upgrader websocket.Upgrader
	closed   bool
}

type knob struct {
	kind       string // "error", "429", "5xx", "drop"
	slackErr   string
	status     int
	retryAfter int
}

// New starts a fake Slack on a loopback port and stops it when the test ends.
func New(t testing.TB) *Fake {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("slackfake: listen: %v", err)
	}
	f := &Fake{
		PingInterval: 2 * time.Second,
		changed:      make(chan struct{}),
		knobs:        map[string][]knob{},
		users:        map[string]User{},
		channels:     map[string]*channel{},
		files:        map[string]*File{},
		sent:         map[string]Envelope{},
		tsBase:       time.Now().Unix() * 1e6,
		upgrader:     websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
	}
	f.lis = &switchListener{inner: l, tcpAddr: l.Addr(), addr: l.Addr().String(), ready: make(chan struct{}), done: make(chan struct{})}
	close(f.lis.ready)
	f.addr = l.Addr().String()
	f.users[BotUserID] = User{ID: BotUserID, TeamID: TeamID, Name: BotName, RealName: "ticketd", IsBot: true, BotID: BotID}
	f.channels[ChannelID] = &channel{id: ChannelID, name: ChannelName}

	mux := http.NewServeMux()
	mux.HandleFunc("/api/{method}", f.serveAPI)
	mux.HandleFunc("POST /upload/{id}", f.serveUpload)
	mux.HandleFunc("GET /files/{id}/{name}", f.serveFileDownload)
	mux.HandleFunc("GET /socket", f.serveSocket)
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.Listener = f.lis
	f.srv.Start()
	t.Cleanup(f.Close)
	return f
}

// URL is the fake's base URL (http://127.0.0.1:port).
func (f *Fake) URL() string { return "http://" + f.addr }

// APIURL is what slack.OptionAPIURL takes: URL()+"/api/".
func (f *Fake) APIURL() string { return f.URL() + "/api/" }

// Close stops the fake: sockets, then the HTTP server.
func (f *Fake) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	conns := append([]*socketConn(nil), f.conns...)
	f.mu.Unlock()
	for _, c := range conns {
		c.drop()
	}
	f.srv.Close()
}

// AddUser registers a workspace member for users.info (and as a reaction or
// message author in envelopes).
func (f *Fake) AddUser(u User) {
	if u.TeamID == "" {
		u.TeamID = TeamID
	}
	if u.Name == "" {
		u.Name = strings.ToLower(u.ID)
	}
	f.mu.Lock()
	f.users[u.ID] = u
	f.mu.Unlock()
	f.notify()
}

// AddChannel makes a channel known; posting to an unknown channel answers
// channel_not_found, as Slack does. ChannelID exists from the start.
func (f *Fake) AddChannel(id, name string) {
	f.mu.Lock()
	if f.channels[id] == nil {
		f.channels[id] = &channel{id: id, name: name}
	}
	f.mu.Unlock()
	f.notify()
}

// EchoPosts makes every message the bot posts come back as a message event over
// Socket Mode (newest connection), as Slack delivers the bot's own messages to
// an app subscribed to message events. Off by default.
func (f *Fake) EchoPosts(on bool) {
	f.mu.Lock()
	f.echo = on
	f.mu.Unlock()
}

// FailNext makes the next n calls of method (or AnyMethod) answer
// {"ok":false,"error":slackErr} with HTTP 200, e.g. "channel_not_found",
// "not_in_channel", "invalid_auth", "ratelimited".
func (f *Fake) FailNext(method string, n int, slackErr string) {
	f.addKnob(method, n, knob{kind: "error", slackErr: slackErr})
}

// RateLimitNext makes the next n calls of method answer HTTP 429 with
// Retry-After: retryAfter seconds (slack-go returns *slack.RateLimitedError).
func (f *Fake) RateLimitNext(method string, n int, retryAfter int) {
	f.addKnob(method, n, knob{kind: "429", status: http.StatusTooManyRequests, retryAfter: retryAfter})
}

// ServerErrorNext makes the next n calls of method answer the HTTP status
// (500, 502, 503...) with an HTML body, as Slack's front end does
// (slack-go returns slack.StatusCodeError).
func (f *Fake) ServerErrorNext(method string, n int, status int) {
	f.addKnob(method, n, knob{kind: "5xx", status: status})
}

// DropNext makes the next n calls of method close the connection without any
// answer (the client sees EOF: a network error).
func (f *Fake) DropNext(method string, n int) {
	f.addKnob(method, n, knob{kind: "drop"})
}

func (f *Fake) addKnob(method string, n int, k knob) {
	f.mu.Lock()
	for range n {
		f.knobs[method] = append(f.knobs[method], k)
	}
	f.mu.Unlock()
}

// takeKnob pops the next knob for method, the method's own before AnyMethod's.
func (f *Fake) takeKnob(method string) (knob, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range []string{method, AnyMethod} {
		if ks := f.knobs[m]; len(ks) > 0 {
			f.knobs[m] = ks[1:]
			return ks[0], true
		}
	}
	return knob{}, false
}

// Refuse closes the fake's port: new connections are refused (ECONNREFUSED),
// open ones, keep-alive and Socket Mode alike, are cut. Restore reopens it on
// the same address.
func (f *Fake) Refuse() {
	f.lis.refuse()
	f.srv.CloseClientConnections()
	f.DropSockets()
}

// Restore reopens the port closed by Refuse.
func (f *Fake) Restore() {
	if err := f.lis.restore(); err != nil {
		panic(fmt.Sprintf("slackfake: reopen %s: %v", f.addr, err))
	}
}

// record appends a call and wakes waiters.
func (f *Fake) record(c Call) {
	f.mu.Lock()
	c.Seq = len(f.calls) + 1
	c.At = time.Now()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	f.notify()
}

// notify wakes every waiter so it re-checks its condition.
func (f *Fake) notify() {
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// Calls returns a copy of every call so far, in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// CallsTo returns the calls of one method, in order.
func (f *Fake) CallsTo(method string) []Call {
	return filterCalls(f.Calls(), method)
}

func filterCalls(calls []Call, method string) []Call {
	var out []Call
	for _, c := range calls {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Until waits until cond is true, re-checking it after every change in the fake
// (a call, an ack, a connection, a message) and every few milliseconds (for
// conditions on the code under test). It fails the test after Timeout. Call it
// from the test goroutine (it calls t.Fatalf).
func (f *Fake) Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	timeout := f.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-poll.C:
		case <-deadline.C:
			t.Fatalf("slackfake: timed out after %v waiting for %s; calls so far:\n%s", timeout, what, f.describeCalls())
		}
	}
}

// WaitFor waits until cond holds for the calls so far and returns them.
func (f *Fake) WaitFor(t testing.TB, what string, cond func(calls []Call) bool) []Call {
	t.Helper()
	var calls []Call
	f.Until(t, what, func() bool {
		calls = f.Calls()
		return cond(calls)
	})
	return calls
}

// WaitCalls waits until method was called at least n times and returns those
// calls (all of them, in order).
func (f *Fake) WaitCalls(t testing.TB, method string, n int) []Call {
	t.Helper()
	calls := f.WaitFor(t, fmt.Sprintf("%d calls of %s", n, method), func(calls []Call) bool {
		return len(filterCalls(calls, method)) >= n
	})
	return filterCalls(calls, method)
}

func (f *Fake) describeCalls() string {
	var b strings.Builder
	for _, c := range f.Calls() {
		fmt.Fprintf(&b, "  #%d %s status=%d error=%q params=%v\n", c.Seq, c.Method, c.Status, c.Error, redact(c.Params))
	}
	return b.String()
}

func redact(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		if k != "token" {
			out[k] = vs
		}
	}
	return out
}

// switchListener lets the fake close its port and reopen it on the same address
// while the httptest server's accept loop keeps running.
type switchListener struct {
	addr    string
	tcpAddr net.Addr
	mu      sync.Mutex
	// inner is the open listener; nil while refused. ready is closed while inner
	// is usable.
	inner net.Listener
	ready chan struct{}
	done  chan struct{}
	shut  bool
}

func (l *switchListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		inner, ready, shut := l.inner, l.ready, l.shut
		l.mu.Unlock()
		if shut {
			return nil, net.ErrClosed
		}
		if inner == nil {
			select {
			case <-ready:
			case <-l.done:
			}
			continue
		}
		c, err := inner.Accept()
		if err == nil {
			return c, nil
		}
		l.mu.Lock()
		swapped := l.inner != inner
		l.mu.Unlock()
		if !swapped || !errors.Is(err, net.ErrClosed) {
			return nil, err
		}
	}
}

func (l *switchListener) refuse() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner == nil {
		return
	}
	inner := l.inner
	l.inner = nil
	l.ready = make(chan struct{})
	_ = inner.Close()
}

func (l *switchListener) restore() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner != nil || l.shut {
		return nil
	}
	nl, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.inner = nl
	close(l.ready)
	return nil
}

func (l *switchListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shut {
		return nil
	}
	l.shut = true
	close(l.done)
	if l.inner != nil {
		return l.inner.Close()
	}
	return nil
}

func (l *switchListener) Addr() net.Addr { return l.tcpAddr }
