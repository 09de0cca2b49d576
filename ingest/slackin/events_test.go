package slackin

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ticketd/ticketd/internal/slackfake"
)

const testSecret = "8f742231b10e8888abcd99yyyzzz85a5"

func eventsServer(t *testing.T, h Handler, opts EventsOptions) (*Events, *httptest.Server) {
	t.Helper()
	opts.SigningSecret = testSecret
	e := NewEvents(h, opts)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return e, srv
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// rebase points a request built for "http://daemon" at the test server.
func rebase(req *http.Request, base string) *http.Request {
	body, _ := io.ReadAll(req.Body)
	out, _ := http.NewRequest(req.Method, base+req.URL.Path, bytes.NewReader(body))
	out.Header = req.Header.Clone()
	return out
}

func TestEventsSignatures(t *testing.T) {
	f := slackfake.New(t)
	h := &connTestHandler{}
	e, srv := eventsServer(t, h, EventsOptions{})
	env := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "hello"})

	good := env.HTTPRequest(srv.URL, testSecret, time.Now())
	replay := rebase(env.HTTPRequest("http://daemon", testSecret, time.Now()), srv.URL)
	if code, _ := do(t, good); code != http.StatusOK {
		t.Fatalf("good request: %d", code)
	}
	// A replay within the window is answered 200 and passed on with the same
	// event_id: the Handler's dedup makes it change nothing.
	if code, _ := do(t, replay); code != http.StatusOK {
		t.Fatalf("replayed request: %d", code)
	}
	if got := h.applied(); len(got) != 2 || got[0] != env.EventID || got[1] != env.EventID {
		t.Fatalf("handler got %v, want the event id %s twice", got, env.EventID)
	}

	bad := []*http.Request{
		env.HTTPRequest(srv.URL, "another-secret", time.Now()),               // wrong secret
		env.HTTPRequest(srv.URL, testSecret, time.Now().Add(-6*time.Minute)), // stale
		env.HTTPRequest(srv.URL, testSecret, time.Now().Add(6*time.Minute)),  // from the future
		slackfake.SignedRequest(srv.URL+PathEvents, "application/json", []byte(`{"type":"event_callback"}`), "x", time.Now(), 0, ""),
	}
	tampered := env.HTTPRequest(srv.URL, testSecret, time.Now())
	body, _ := io.ReadAll(tampered.Body)
	tampered.Body = io.NopCloser(bytes.NewReader(bytes.Replace(body, []byte("hello"), []byte("hellO"), 1)))
	bad = append(bad, tampered)
	unsigned, _ := http.NewRequest(http.MethodPost, srv.URL+PathEvents, bytes.NewReader(env.Payload))
	bad = append(bad, unsigned)
	for i, req := range bad {
		if code, _ := do(t, req); code != http.StatusUnauthorized {
			t.Errorf("bad request %d: %d, want 401", i, code)
		}
	}
	if got := h.applied(); len(got) != 2 {
		t.Fatalf("a refused request reached the handler: %v", got)
	}
	if st := e.Stats(); st.Rejected != uint64(len(bad)) || st.Acked != 2 || st.Received != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEventsRetriesCarryTheEventID(t *testing.T) {
	f := slackfake.New(t)
	h := &connTestHandler{failNext: 1}
	e, srv := eventsServer(t, h, EventsOptions{})
	env := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "hello"})
	if code, _ := do(t, env.HTTPRequest(srv.URL, testSecret, time.Now())); code != http.StatusInternalServerError {
		t.Fatalf("failing handler answered %d, want 500", code)
	}
	env.RetryAttempt, env.RetryReason = 1, "http_error"
	req := env.HTTPRequest(srv.URL, testSecret, time.Now())
	if req.Header.Get("X-Slack-Retry-Num") != "1" {
		t.Fatal("retry header missing")
	}
	if code, _ := do(t, req); code != http.StatusOK {
		t.Fatalf("retry answered %d", code)
	}
	if got := h.applied(); len(got) != 1 || got[0] != env.EventID || h.attempts[env.EventID] != 2 {
		t.Fatalf("applied %v attempts %v", got, h.attempts)
	}
	if st := e.Stats(); st.HandlerErrors != 1 || st.Acked != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A Handler that does not store within the deadline is answered 500, well
// before Slack's 3 s, so that Slack retries.
func TestEventsSlowHandlerAnswers500(t *testing.T) {
	f := slackfake.New(t)
	h := &connTestHandler{block: make(chan struct{})}
	defer close(h.block)
	_, srv := eventsServer(t, h, EventsOptions{HandlerTimeout: 20 * time.Millisecond})
	env := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "hello"})
	if code, _ := do(t, env.HTTPRequest(srv.URL, testSecret, time.Now())); code != http.StatusInternalServerError {
		t.Fatalf("slow handler answered %d, want 500", code)
	}
}

func TestEventsURLVerificationCommandsInteractions(t *testing.T) {
	f := slackfake.New(t)
	h := &connTestHandler{}
	_, srv := eventsServer(t, h, EventsOptions{MaxBodyBytes: 8 << 10})

	req := slackfake.SignedRequest(srv.URL+PathEvents, "application/json", slackfake.URLVerificationBody("chal-123"), testSecret, time.Now(), 0, "")
	if code, body := do(t, req); code != http.StatusOK || body != "chal-123" {
		t.Fatalf("url_verification: %d %q", code, body)
	}
	// Unsigned url_verification is refused like anything else.
	req, _ = http.NewRequest(http.MethodPost, srv.URL+PathEvents, bytes.NewReader(slackfake.URLVerificationBody("x")))
	if code, _ := do(t, req); code != http.StatusUnauthorized {
		t.Fatalf("unsigned url_verification: %d", code)
	}

	cmd := f.SlashCommandEnvelope("U1", slackfake.ChannelID, "/ticket", "42 resolved")
	code, body := do(t, cmd.HTTPRequest(srv.URL, testSecret, time.Now()))
	var msg struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &msg) != nil || msg.Text != "#42 is open" || msg.ResponseType != "ephemeral" {
		t.Fatalf("command: %d %q", code, body)
	}
	root := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "root"})
	act := f.BlockActionEnvelope("U1", slackfake.ChannelID, root.MessageTS, slackfake.Action{ActionID: "priority", Type: "static_select", Value: "high"})
	if code, _ := do(t, act.HTTPRequest(srv.URL, testSecret, time.Now())); code != http.StatusOK {
		t.Fatalf("interaction: %d", code)
	}
	h.mu.Lock()
	if len(h.commands) != 1 || h.commands[0].Text != "42 resolved" || len(h.actions) != 1 ||
		h.actions[0].ActionCallback.BlockActions[0].SelectedOption.Value != "high" {
		t.Fatalf("commands %+v actions %+v", h.commands, h.actions)
	}
	h.mu.Unlock()

	big := slackfake.SignedRequest(srv.URL+PathEvents, "application/json", []byte(`{"x":"`+strings.Repeat("a", 9<<10)+`"}`), testSecret, time.Now(), 0, "")
	if code, _ := do(t, big); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d", code)
	}
	get, _ := http.NewRequest(http.MethodGet, srv.URL+PathEvents, nil)
	if code, _ := do(t, get); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", code)
	}
}
