package slackfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Ack is what a Socket Mode client sent back over the WebSocket: normally the
// acknowledgement of an envelope, with an optional response payload.
type Ack struct {
	EnvelopeID string
	Payload    json.RawMessage // "" when the client sent none
	Conn       int             // which connection (1 = first)
	At         time.Time
}

// ErrNoConnection is returned by Send when no Socket Mode client is connected.
var ErrNoConnection = errors.New("slackfake: no open Socket Mode connection")

type socketConn struct {
	id    int
	ws    *websocket.Conn
	wmu   sync.Mutex // gorilla allows one writer at a time
	done  chan struct{}
	once  sync.Once
	ready bool // hello written; guarded by Fake.mu
}

func (c *socketConn) open() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// drop cuts the connection without a close handshake, as a network failure does.
func (c *socketConn) drop() {
	c.once.Do(func() { close(c.done) })
	_ = c.ws.NetConn().Close()
}

func (c *socketConn) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func (f *Fake) connectionsOpen() (map[string]any, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return map[string]any{"url": fmt.Sprintf("ws://%s/socket?ticket=%d", f.addr, f.seq)}, ""
}

func (f *Fake) serveSocket(w http.ResponseWriter, r *http.Request) {
	call := Call{Method: SocketMethod, Params: r.URL.Query()}
	if f.applyKnob(w, r, &call) {
		return
	}
	ws, err := f.upgrader.Upgrade(w, r, nil)
	if err != nil {
		call.Status = http.StatusBadRequest
		f.record(call)
		return
	}
	call.Status = http.StatusSwitchingProtocols
	f.mu.Lock()
	c := &socketConn{id: len(f.conns) + 1, ws: ws, done: make(chan struct{})}
	f.conns = append(f.conns, c)
	open := 0
	for _, o := range f.conns {
		if o.open() {
			open++
		}
	}
	ping := f.PingInterval
	f.mu.Unlock()
	hello := map[string]any{"type": "hello", "num_connections": open,
		"connection_info": map[string]any{"app_id": AppID},
		"debug_info":      map[string]any{"host": "slackfake", "build_number": 1, "approximate_connection_time": 18060}}
	if err := c.write(hello); err != nil {
		c.drop()
	}
	// The connection counts as ready once hello is written, so a test that waited
	// for it can push envelopes at once.
	f.mu.Lock()
	c.ready = true
	f.mu.Unlock()
	f.record(call)
	go f.pingLoop(c, ping)
	f.readAcks(c)
}

func (f *Fake) pingLoop(c *socketConn, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if c.ws.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(5*time.Second)) != nil {
				return
			}
		}
	}
}

func (f *Fake) readAcks(c *socketConn) {
	defer func() {
		c.drop()
		f.notify()
	}()
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var res struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(data, &res) != nil {
			continue
		}
		f.mu.Lock()
		f.acks = append(f.acks, Ack{EnvelopeID: res.EnvelopeID, Payload: res.Payload, Conn: c.id, At: time.Now()})
		f.mu.Unlock()
		f.notify()
	}
}

// Send pushes an envelope to the newest open Socket Mode connection.
func (f *Fake) Send(env Envelope) error {
	f.mu.Lock()
	var target *socketConn
	for i := len(f.conns) - 1; i >= 0; i-- {
		if f.conns[i].open() {
			target = f.conns[i]
			break
		}
	}
	f.mu.Unlock()
	if target == nil {
		return ErrNoConnection
	}
	return f.sendOn(target, env)
}

// SendTo pushes an envelope to one connection (1 = the first ever made).
func (f *Fake) SendTo(conn int, env Envelope) error {
	f.mu.Lock()
	var target *socketConn
	if conn >= 1 && conn <= len(f.conns) && f.conns[conn-1].open() {
		target = f.conns[conn-1]
	}
	f.mu.Unlock()
	if target == nil {
		return fmt.Errorf("slackfake: connection %d: %w", conn, ErrNoConnection)
	}
	return f.sendOn(target, env)
}

func (f *Fake) sendOn(c *socketConn, env Envelope) error {
	f.mu.Lock()
	f.sent[env.EnvelopeID] = env
	f.mu.Unlock()
	if err := c.write(env); err != nil {
		return fmt.Errorf("slackfake: send %s: %w", env.EnvelopeID, err)
	}
	return nil
}

// MustSend is Send that fails the test on error.
func (f *Fake) MustSend(t testing.TB, env Envelope) {
	t.Helper()
	if err := f.Send(env); err != nil {
		t.Fatal(err)
	}
}

// Redeliver sends an envelope again as Slack does when it got no ack: same
// envelope id, retry_attempt one higher, retry_reason "timeout".
func (f *Fake) Redeliver(envelopeID string) error {
	f.mu.Lock()
	env, ok := f.sent[envelopeID]
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("slackfake: envelope %s was never sent", envelopeID)
	}
	env.RetryAttempt++
	env.RetryReason = "timeout"
	return f.Send(env)
}

// Unacked lists the ids of envelopes sent but never acknowledged, sorted.
func (f *Fake) Unacked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.sent {
		if !slices.ContainsFunc(f.acks, func(a Ack) bool { return a.EnvelopeID == id }) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Acks returns everything clients sent back, in order.
func (f *Fake) Acks() []Ack {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.acks)
}

// AcksFor returns the acks of one envelope (more than one means the client
// acked a redelivery too).
func (f *Fake) AcksFor(envelopeID string) []Ack {
	var out []Ack
	for _, a := range f.Acks() {
		if a.EnvelopeID == envelopeID {
			out = append(out, a)
		}
	}
	return out
}

// WaitAck waits for the ack of an envelope and returns it.
func (f *Fake) WaitAck(t testing.TB, envelopeID string) Ack {
	t.Helper()
	var ack Ack
	f.Until(t, "the ack of envelope "+envelopeID, func() bool {
		acks := f.AcksFor(envelopeID)
		if len(acks) == 0 {
			return false
		}
		ack = acks[0]
		return true
	})
	return ack
}

// Connections counts Socket Mode connections ever accepted (hello sent).
func (f *Fake) Connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.conns {
		if c.ready {
			n++
		}
	}
	return n
}

// OpenConnections counts Socket Mode connections open now.
func (f *Fake) OpenConnections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.conns {
		if c.open() {
			n++
		}
	}
	return n
}

// WaitConnections waits until n connections were accepted in all and the n-th
// is open (its hello sent), so Send reaches it.
func (f *Fake) WaitConnections(t testing.TB, n int) {
	t.Helper()
	f.Until(t, fmt.Sprintf("Socket Mode connection #%d", n), func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.conns) >= n && f.conns[n-1].ready && f.conns[n-1].open()
	})
}

// DropSockets cuts every open Socket Mode connection without a close handshake
// (the client sees a read error and must reconnect).
func (f *Fake) DropSockets() {
	f.mu.Lock()
	conns := slices.Clone(f.conns)
	f.mu.Unlock()
	for _, c := range conns {
		c.drop()
	}
	f.notify()
}

// RequestDisconnect sends Slack's "disconnect" message (reason
// refresh_requested) on every open connection, as Slack does before it rotates
// a connection; the client is expected to open a new one.
func (f *Fake) RequestDisconnect() {
	f.mu.Lock()
	conns := slices.Clone(f.conns)
	f.mu.Unlock()
	for _, c := range conns {
		if c.open() {
			_ = c.write(map[string]any{"type": "disconnect", "reason": "refresh_requested",
				"debug_info": map[string]any{"host": "slackfake"}})
		}
	}
}
