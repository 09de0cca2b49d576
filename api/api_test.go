package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/golang-jwt/jwt/v5"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

var secret = []byte("test-secret-0123456789abcdef")

type harness struct {
	t     *testing.T
	srv   *httptest.Server
	store *store.Store
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	st := storetest.Open(t)
	return serveAPI(t, st, st, api.Options{JWTSecret: secret, MaxBodyBytes: 4096})
}

// serveAPI runs the API with o over api, which is st or a fake around it.
func serveAPI(t *testing.T, st *store.Store, over api.Store, o api.Options) *harness {
	t.Helper()
	a, err := api.New(over, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return &harness{t: t, srv: srv, store: st}
}

type user struct {
	id    bson.ObjectID
	token string
}

func (h *harness) user(role api.Role, team string) user {
	h.t.Helper()
	id := bson.NewObjectID()
	tok, err := api.NewToken(secret, id, role, team, time.Hour, time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return user{id: id, token: tok}
}

type answer struct {
	Code    int
	Success bool            `json:"success"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
	Total   *int64          `json:"total"`
	Raw     string
	Header  http.Header
}

func (a answer) ticket(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.Data, &m); err != nil {
		t.Fatalf("data is not an object: %s", a.Raw)
	}
	return m
}

func (a answer) list(t *testing.T) []map[string]any {
	t.Helper()
	var l []map[string]any
	if err := json.Unmarshal(a.Data, &l); err != nil {
		t.Fatalf("data is not a list: %s", a.Raw)
	}
	return l
}

// call sends a request; body may be a string (sent as is) or a value (JSON).
func (h *harness) call(method, path, token string, body any, hdr ...string) answer {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, h.srv.URL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	a := answer{Code: res.StatusCode, Raw: string(raw), Header: res.Header}
	if ct := res.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		if err := json.Unmarshal(raw, &a); err != nil {
			h.t.Fatalf("%s %s: answer is not JSON: %q", method, path, raw)
		}
	}
	return a
}

func (h *harness) create(u user, subject string) map[string]any {
	h.t.Helper()
	a := h.call("POST", "/api/ticket/create", u.token, map[string]string{"category": "Support", "subject": subject, "description": "about " + subject})
	if a.Code != 201 {
		h.t.Fatalf("create: %d %s", a.Code, a.Raw)
	}
	return a.ticket(h.t)
}

var stamp = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func TestCreateAnswersSeedShape(t *testing.T) {
	h := newHarness(t)
	c := h.user(api.RoleCustomer, "acme")
	a := h.call("POST", "/api/ticket/create", c.token, map[string]string{
		"category": "Support", "subject": "Account Issue", "description": "I am facing an issue with my account.",
	})
	if a.Code != 201 || !a.Success || a.Message != "Ticket created successfullly!" {
		t.Fatalf("create: %d %v %q", a.Code, a.Success, a.Message)
	}
	// Seed 004's fields, in the seed's order, then the extensions.
	order := []string{`"_id"`, `"creatorId"`, `"creatorType"`, `"category"`, `"subject"`, `"description"`,
		`"priority"`, `"status"`, `"response"`, `"createdAt"`, `"updatedAt"`, `"__v"`, `"refId"`}
	last := -1
	for _, k := range order {
		i := strings.Index(string(a.Data), k)
		if i <= last {
			t.Fatalf("field %s missing or out of seed order in %s", k, a.Data)
		}
		last = i
	}
	tk := a.ticket(t)
	want := map[string]any{"creatorId": c.id.Hex(), "creatorType": "customer", "category": "Support",
		"subject": "Account Issue", "priority": "low", "status": "created", "__v": 0.0}
	for k, v := range want {
		if tk[k] != v {
			t.Errorf("%s = %v, want %v", k, tk[k], v)
		}
	}
	if r, ok := tk["response"].([]any); !ok || len(r) != 0 {
		t.Errorf("response = %v, want []", tk["response"])
	}
	for _, k := range []string{"createdAt", "updatedAt"} {
		if s, _ := tk[k].(string); !stamp.MatchString(s) {
			t.Errorf("%s = %q, want RFC 3339 UTC with milliseconds", k, s)
		}
	}
	if id, _ := tk["_id"].(string); !regexp.MustCompile(`^[0-9a-f]{24}$`).MatchString(id) {
		t.Errorf("_id = %q", id)
	}
}

func TestReplyRoutesAndReopen(t *testing.T) {
	h := newHarness(t)
	c := h.user(api.RoleCustomer, "acme")
	adm := h.user(api.RoleAdmin, "")
	id := h.create(c, "Printer")["_id"].(string)

	a := h.call("POST", "/api/ticket/create-reply?id="+id, c.token, map[string]string{"description": "I want to add more details about my issue."})
	if a.Code != 200 || a.Message != "Response added successfully!" {
		t.Fatalf("customer reply: %d %s", a.Code, a.Raw)
	}
	tk := a.ticket(t)
	resp := tk["response"].([]any)[0].(map[string]any)
	if resp["creatorType"] != "customer" || resp["creatorId"] != c.id.Hex() || tk["__v"] != 1.0 || !stamp.MatchString(resp["createdAt"].(string)) {
		t.Errorf("customer response: %v (__v %v)", resp, tk["__v"])
	}
	a = h.call("POST", "/api/ticket/admin-create-reply?id="+id, adm.token, map[string]string{"description": "We are looking into your issue and will update you soon."})
	if a.Code != 200 || a.Message != "Response added successfully!" {
		t.Fatalf("admin reply: %d %s", a.Code, a.Raw)
	}
	tk = a.ticket(t)
	if r := tk["response"].([]any)[1].(map[string]any); r["creatorType"] != "admin" || r["creatorId"] != adm.id.Hex() || tk["__v"] != 2.0 {
		t.Errorf("admin response: %v", r)
	}

	if a = h.call("PATCH", "/api/ticket/admin-update?id="+id, adm.token, map[string]string{"status": "closed"}); a.Code != 200 || a.ticket(t)["status"] != "closed" {
		t.Fatalf("close: %d %s", a.Code, a.Raw)
	}
	a = h.call("POST", "/api/ticket/create-reply?id="+id, c.token, map[string]string{"description": "It broke again"})
	if a.Code != 200 || a.ticket(t)["status"] != "open" {
		t.Fatalf("customer reply must reopen a closed ticket: %s", a.Raw)
	}
	logs := h.call("GET", "/api/ticket/admin-logs?id="+id, adm.token, nil).list(t)
	var actions []string
	for _, l := range logs {
		actions = append(actions, l["actionTaken"].(string))
		for _, k := range []string{"_id", "ticketId", "actionTaken", "actionBy", "actionByType", "actionAt"} {
			if _, ok := l[k]; !ok {
				t.Errorf("log entry lacks %s: %v", k, l)
			}
		}
	}
	want := "[Ticket created Response added by customer Response added by admin Status changed from created to closed Response added by customer Status changed from closed to open (reopened by customer reply)]"
	if fmt.Sprint(actions) != want {
		t.Errorf("audit log:\n got %v\nwant %s", actions, want)
	}
}

func TestInternalNotesStayInternal(t *testing.T) {
	h := newHarness(t)
	c := h.user(api.RoleCustomer, "acme")
	adm := h.user(api.RoleAdmin, "")
	id := h.create(c, "x")["_id"].(string)
	if a := h.call("POST", "/api/ticket/admin-create-reply?id="+id, adm.token, map[string]any{"description": "customer is grumpy", "internal": true}); a.Code != 200 {
		t.Fatal(a.Raw)
	}
	if a := h.call("GET", "/api/ticket/fetch-one?id="+id, c.token, nil); strings.Contains(a.Raw, "grumpy") || len(a.ticket(t)["response"].([]any)) != 0 {
		t.Errorf("customer sees the internal note: %s", a.Raw)
	}
	if a := h.call("GET", "/api/ticket/admin-fetch-one?id="+id, adm.token, nil); !strings.Contains(a.Raw, `"internal":true`) {
		t.Errorf("admin must see the note flagged internal: %s", a.Raw)
	}
	if a := h.call("POST", "/api/ticket/create-reply?id="+id, c.token, map[string]any{"description": "x", "internal": true}); a.Code != 400 {
		t.Errorf("customer internal note: %d", a.Code)
	}
}

func TestTeamIsolation(t *testing.T) {
	h := newHarness(t)
	ann := h.user(api.RoleCustomer, "acme")
	bob := h.user(api.RoleCustomer, "acme")
	eve := h.user(api.RoleCustomer, "evil")
	loner := h.user(api.RoleCustomer, "") // personal team
	id := h.create(ann, "acme secret")["_id"].(string)
	h.create(loner, "mine alone")

	if l := h.call("GET", "/api/ticket/fetch", bob.token, nil).list(t); len(l) != 1 || l[0]["_id"] != id {
		t.Errorf("teammate must see the team's ticket: %v", l)
	}
	if l := h.call("GET", "/api/ticket/fetch", eve.token, nil).list(t); len(l) != 0 {
		t.Errorf("other team sees %d tickets", len(l))
	}
	for _, probe := range []struct{ method, path string }{
		{"GET", "/api/ticket/fetch-one?id=" + id},
		{"POST", "/api/ticket/create-reply?id=" + id},
	} {
		a := h.call(probe.method, probe.path, eve.token, map[string]string{"description": "let me in"})
		if probe.method == "GET" {
			a = h.call(probe.method, probe.path, eve.token, nil)
		}
		unknown := h.call(probe.method, strings.Replace(probe.path, id, bson.NewObjectID().Hex(), 1), eve.token, map[string]string{"description": "x"})
		if probe.method == "GET" {
			unknown = h.call(probe.method, strings.Replace(probe.path, id, bson.NewObjectID().Hex(), 1), eve.token, nil)
		}
		if a.Code != 404 || a.Raw != unknown.Raw {
			t.Errorf("%s %s by a stranger: %d %s; must equal the unknown-ticket answer %s", probe.method, probe.path, a.Code, a.Raw, unknown.Raw)
		}
	}
	if l := h.call("GET", "/api/ticket/fetch", loner.token, nil).list(t); len(l) != 1 || l[0]["subject"] != "mine alone" {
		t.Errorf("a customer without a team sees only its own: %v", l)
	}
}

func TestAdminUpdateDeleteAndFilters(t *testing.T) {
	h := newHarness(t)
	ann := h.user(api.RoleCustomer, "acme")
	zed := h.user(api.RoleCustomer, "zeta")
	adm := h.user(api.RoleAdmin, "")
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, h.create(ann, fmt.Sprintf("Printer jam %d", i))["_id"].(string))
	}
	zid := h.create(zed, "Refund please")["_id"].(string)
	agent := bson.NewObjectID().Hex()

	a := h.call("PATCH", "/api/ticket/admin-update?id="+ids[1], adm.token, map[string]any{"status": "in-progress", "priority": "urgent", "category": "Billing", "assigneeId": agent})
	tk := a.ticket(t)
	if a.Code != 200 || tk["status"] != "in-progress" || tk["priority"] != "urgent" || tk["category"] != "Billing" || tk["assigneeId"] != agent || tk["__v"] != 1.0 {
		t.Fatalf("update: %d %s", a.Code, a.Raw)
	}
	if a := h.call("PATCH", "/api/ticket/admin-update?id="+ids[1], adm.token, map[string]any{"status": "resolved", "__v": 0}); a.Code != 409 || a.Success {
		t.Errorf("stale __v: %d %s", a.Code, a.Raw)
	}
	if a := h.call("PATCH", "/api/ticket/admin-update?id="+ids[1], adm.token, map[string]any{"status": "resolved", "__v": 1}); a.Code != 200 {
		t.Errorf("current __v: %d %s", a.Code, a.Raw)
	}

	list := func(q string) answer { return h.call("GET", "/api/ticket/admin-fetch"+q, adm.token, nil) }
	if a := list(""); len(a.list(t)) != 6 || *a.Total != 6 || a.Message != "Ticket fetched successfullly!" {
		t.Errorf("admin-fetch: %d items, %s", len(a.list(t)), a.Raw[:80])
	}
	if l := list("").list(t); l[0]["_id"] != ids[1] {
		t.Errorf("newest-updated first: %v first", l[0]["subject"])
	}
	cases := map[string]int{
		"?status=resolved":           1,
		"?priority=urgent":           1,
		"?category=Billing":          1,
		"?keyword=printer":           5,
		"?keyword=JAM%203":           1,
		"?teamId=zeta":               1,
		"?creatorId=" + ann.id.Hex(): 5,
		"?limit=2&offset=4":          2,
		"?limit=2&offset=6":          0,
	}
	for q, n := range cases {
		if got := len(list(q).list(t)); got != n {
			t.Errorf("admin-fetch%s: %d tickets, want %d", q, got, n)
		}
	}
	if a := list("?keyword=printer&count=true"); a.Code != 200 || strings.TrimSpace(string(a.Data)) != `{"count":5}` {
		t.Errorf("count=true: %s", a.Raw)
	}
	if a := h.call("GET", "/api/ticket/fetch?count=true&status=created", ann.token, nil); string(a.Data) != `{"count":4}` {
		t.Errorf("customer count: %s", a.Raw)
	}
	// Pages walk every ticket exactly once.
	seen := map[any]int{}
	for off := 0; off < 6; off += 4 {
		for _, tk := range list(fmt.Sprintf("?limit=4&offset=%d", off)).list(t) {
			seen[tk["_id"]]++
		}
	}
	if len(seen) != 6 {
		t.Errorf("pages covered %d tickets, want 6", len(seen))
	}

	if a := h.call("DELETE", "/api/ticket/admin-delete?id="+zid, adm.token, nil); a.Code != 200 || a.Message != "Ticket deleted successfully!" {
		t.Fatalf("delete: %d %s", a.Code, a.Raw)
	}
	if a := h.call("GET", "/api/ticket/admin-fetch-one?id="+zid, adm.token, nil); a.Code != 404 {
		t.Errorf("deleted ticket: %d", a.Code)
	}
	if a := h.call("DELETE", "/api/ticket/admin-delete?id="+zid, adm.token, nil); a.Code != 404 {
		t.Errorf("delete twice: %d", a.Code)
	}
	if a := list(""); *a.Total != 5 {
		t.Errorf("deleted ticket still listed: %d", *a.Total)
	}
}

func TestChangesRecordAuditAndOutbox(t *testing.T) {
	h := newHarness(t)
	c := h.user(api.RoleCustomer, "acme")
	adm := h.user(api.RoleAdmin, "")
	id := h.create(c, "x")["_id"].(string)
	h.call("POST", "/api/ticket/admin-create-reply?id="+id, adm.token, map[string]string{"description": "hello"})
	h.call("PATCH", "/api/ticket/admin-update?id="+id, adm.token, map[string]string{"status": "resolved", "priority": "high"})
	oid, _ := bson.ObjectIDFromHex(id)
	tk, err := h.store.Ticket(context.Background(), oid, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range tk.Outbox {
		kinds = append(kinds, string(e.Kind)+"/"+string(e.ActorType))
	}
	if fmt.Sprint(kinds) != "[ticket.created/customer response.added/admin status.changed/admin priority.changed/admin]" {
		t.Errorf("outbox: %v", kinds)
	}
	if len(tk.Logs) != 4 {
		t.Errorf("want 4 audit lines, got %d", len(tk.Logs))
	}
}

func TestIdempotencyKeyOnCreate(t *testing.T) {
	h := newHarness(t)
	c := h.user(api.RoleCustomer, "acme")
	body := map[string]string{"subject": "once", "description": "only once"}
	a1 := h.call("POST", "/api/ticket/create", c.token, body, "Idempotency-Key", "k-1")
	a2 := h.call("POST", "/api/ticket/create", c.token, body, "Idempotency-Key", "k-1")
	if a1.Code != 201 || a2.Code != 201 || a1.ticket(t)["_id"] != a2.ticket(t)["_id"] {
		t.Errorf("retried create made a second ticket: %s / %s", a1.Raw, a2.Raw)
	}
	if a1.ticket(t)["category"] != "Support" {
		t.Errorf("absent category must default to the first configured one")
	}
	if n := len(h.call("GET", "/api/ticket/fetch", c.token, nil).list(t)); n != 1 {
		t.Errorf("%d tickets", n)
	}
}

// Replies take an Idempotency-Key under the same rules as creates: a retry
// adds nothing, a key over 200 characters is refused before anything is
// stored.
func TestIdempotencyKeyOnReply(t *testing.T) {
	h := newHarness(t)
	c := h.user(api.RoleCustomer, "acme")
	id := h.create(c, "keys")["_id"].(string)
	body := map[string]string{"description": "said once"}
	for range 2 {
		if a := h.call("POST", "/api/ticket/create-reply?id="+id, c.token, body, "Idempotency-Key", "r-1"); a.Code != 200 {
			t.Fatalf("reply: %d %s", a.Code, a.Raw)
		}
	}
	a := h.call("POST", "/api/ticket/create-reply?id="+id, c.token, body, "Idempotency-Key", strings.Repeat("k", 201))
	if a.Code != 400 || a.Success || !strings.Contains(a.Message, "Idempotency-Key") {
		t.Errorf("reply with a 201-character key: %d %s, want 400 naming the header", a.Code, a.Raw)
	}
	tk := h.call("GET", "/api/ticket/fetch-one?id="+id, c.token, nil).ticket(t)
	if n := len(tk["response"].([]any)); n != 1 {
		t.Errorf("%d responses, want the retried one once and the refused one not at all", n)
	}
}

func TestCategoriesForBothRoles(t *testing.T) {
	h := newHarness(t)
	for _, role := range []api.Role{api.RoleCustomer, api.RoleAdmin} {
		a := h.call("GET", "/api/ticket/categories", h.user(role, "t").token, nil)
		if a.Code != 200 || !strings.Contains(string(a.Data), `"Support"`) {
			t.Errorf("%s: %d %s", role, a.Code, a.Raw)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	h := newHarness(t)
	c := h.user(api.RoleCustomer, "acme")
	adm := h.user(api.RoleAdmin, "")
	id := h.create(c, "x")["_id"].(string)
	sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := jwt.MapClaims{"sub": c.id.Hex(), "role": "customer", "team": "acme", "exp": time.Now().Add(time.Hour).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		m := jwt.MapClaims{}
		for a, b := range good {
			m[a] = b
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	none := sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good)
	long := strings.Repeat("x", 201)
	huge := `{"subject":"s","description":"` + strings.Repeat("y", 5000) + `"}`
	tests := []struct {
		name, method, path, token string
		body                      any
		ctype                     string
		code                      int
	}{
		{"malformed JSON", "POST", "/api/ticket/create", c.token, `{"subject":`, "", 400},
		{"JSON array", "POST", "/api/ticket/create", c.token, `[1,2]`, "", 400},
		{"trailing data", "POST", "/api/ticket/create", c.token, `{"subject":"a","description":"b"} {}`, "", 400},
		{"empty body", "POST", "/api/ticket/create", c.token, ``, "", 400},
		{"wrong type", "POST", "/api/ticket/create", c.token, `{"subject":5,"description":"b"}`, "", 400},
		{"missing subject", "POST", "/api/ticket/create", c.token, map[string]string{"description": "d"}, "", 400},
		{"blank description", "POST", "/api/ticket/create", c.token, map[string]string{"subject": "s", "description": "  "}, "", 400},
		{"oversize subject", "POST", "/api/ticket/create", c.token, map[string]string{"subject": long, "description": "d"}, "", 400},
		{"unknown category", "POST", "/api/ticket/create", c.token, map[string]string{"subject": "s", "description": "d", "category": "Nope"}, "", 400},
		{"unknown priority", "POST", "/api/ticket/create", c.token, map[string]string{"subject": "s", "description": "d", "priority": "asap"}, "", 400},
		{"invalid id", "GET", "/api/ticket/fetch-one?id=123", c.token, nil, "", 400},
		{"missing id", "GET", "/api/ticket/fetch-one", c.token, nil, "", 400},
		{"unknown status", "PATCH", "/api/ticket/admin-update?id=" + id, adm.token, map[string]string{"status": "done"}, "", 400},
		{"empty update", "PATCH", "/api/ticket/admin-update?id=" + id, adm.token, map[string]string{}, "", 400},
		{"bad assignee", "PATCH", "/api/ticket/admin-update?id=" + id, adm.token, map[string]string{"assigneeId": "bob"}, "", 400},
		{"bad limit", "GET", "/api/ticket/fetch?limit=-1", c.token, nil, "", 400},
		{"bad count", "GET", "/api/ticket/fetch?count=yes", c.token, nil, "", 400},
		{"bad status filter", "GET", "/api/ticket/fetch?status=done", c.token, nil, "", 400},
		{"keyword not UTF-8", "GET", "/api/ticket/fetch?keyword=%FF", c.token, nil, "", 400},
		{"keyword with NUL", "GET", "/api/ticket/admin-fetch?keyword=a%00b", adm.token, nil, "", 400},
		{"no token", "GET", "/api/ticket/fetch", "", nil, "", 401},
		{"malformed token", "GET", "/api/ticket/fetch", "not.a.jwt", nil, "", 401},
		{"expired token", "GET", "/api/ticket/fetch", sign(jwt.SigningMethodHS256, secret, with("exp", time.Now().Add(-time.Hour).Unix())), nil, "", 401},
		{"no exp", "GET", "/api/ticket/fetch", sign(jwt.SigningMethodHS256, secret, with("exp", nil)), nil, "", 401},
		{"exp as string", "GET", "/api/ticket/fetch", sign(jwt.SigningMethodHS256, secret, with("exp", fmt.Sprint(time.Now().Add(time.Hour).Unix()))), nil, "", 401},
		{"iat as string", "GET", "/api/ticket/fetch", sign(jwt.SigningMethodHS256, secret, with("iat", fmt.Sprint(time.Now().Unix()))), nil, "", 401},
		{"personal team of another", "GET", "/api/ticket/fetch", sign(jwt.SigningMethodHS256, secret, with("team", store.PersonalTeam(bson.NewObjectID()))), nil, "", 401},
		{"bad signature", "GET", "/api/ticket/fetch", sign(jwt.SigningMethodHS256, []byte("another-secret-of-16+"), good), nil, "", 401},
		{"alg none", "GET", "/api/ticket/fetch", none, nil, "", 401},
		{"HS512", "GET", "/api/ticket/fetch", sign(jwt.SigningMethodHS512, secret, good), nil, "", 401},
		{"bad sub", "GET", "/api/ticket/fetch", sign(jwt.SigningMethodHS256, secret, with("sub", "alice")), nil, "", 401},
		{"bad role", "GET", "/api/ticket/fetch", sign(jwt.SigningMethodHS256, secret, with("role", "root")), nil, "", 401},
		{"customer on admin route", "GET", "/api/ticket/admin-fetch", c.token, nil, "", 403},
		{"admin on customer route", "POST", "/api/ticket/create", adm.token, map[string]string{"subject": "s", "description": "d"}, "", 403},
		{"unknown ticket", "GET", "/api/ticket/admin-fetch-one?id=" + bson.NewObjectID().Hex(), adm.token, nil, "", 404},
		{"unknown route", "GET", "/api/ticket/nope", c.token, nil, "", 404},
		{"wrong method", "DELETE", "/api/ticket/fetch", c.token, nil, "", 405},
		{"body over limit", "POST", "/api/ticket/create", c.token, huge, "", 413},
		{"wrong content type", "POST", "/api/ticket/create", c.token, `subject=s`, "application/x-www-form-urlencoded", 415},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.ctype != "" {
				hdr = []string{"Content-Type", tt.ctype}
			}
			a := h.call(tt.method, tt.path, tt.token, tt.body, hdr...)
			if a.Code != tt.code || a.Success || a.Message == "" {
				t.Fatalf("got %d %s, want %d with the error envelope", a.Code, a.Raw, tt.code)
			}
			if tt.code == 401 && a.Message != "Unauthorized" {
				t.Errorf("401 message %q, want Unauthorized", a.Message)
			}
			if strings.Contains(a.Raw, "goroutine") || strings.Contains(a.Raw, ".go:") {
				t.Errorf("answer leaks internals: %s", a.Raw)
			}
		})
	}
}

func TestStoreUnreachableIs503(t *testing.T) {
	h := newHarness(t)
	c := h.user(api.RoleCustomer, "acme")
	if a := h.call("GET", "/readyz", "", nil); a.Code != 200 {
		t.Fatalf("readyz: %d", a.Code)
	}
	if err := h.store.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, a := range []answer{
		h.call("GET", "/readyz", "", nil),
		h.call("GET", "/api/ticket/fetch", c.token, nil),
		h.call("POST", "/api/ticket/create", c.token, map[string]string{"subject": "s", "description": "d"}),
	} {
		if a.Code != 503 || a.Success || strings.Contains(a.Raw, "mongo") {
			t.Errorf("store down: %d %s, want 503 with a plain message", a.Code, a.Raw)
		}
	}
	if a := h.call("GET", "/healthz", "", nil); a.Code != 200 {
		t.Errorf("healthz must not depend on the store: %d", a.Code)
	}
}

func TestConcurrentRepliesOverHTTP(t *testing.T) {
	h := newHarness(t)
	c := h.user(api.RoleCustomer, "acme")
	adm := h.user(api.RoleAdmin, "")
	id := h.create(c, "busy")["_id"].(string)
	const clients, each = 16, 4
	var wg sync.WaitGroup
	codes := make(chan int, clients*each)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tok := c.token
			path := "/api/ticket/create-reply?id=" + id
			if i%2 == 1 {
				tok, path = adm.token, "/api/ticket/admin-create-reply?id="+id
			}
			for j := 0; j < each; j++ {
				body, _ := json.Marshal(map[string]string{"description": fmt.Sprintf("c%d-%d", i, j)})
				req, _ := http.NewRequest("POST", h.srv.URL+path, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					codes <- 0
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				codes <- res.StatusCode
			}
		}(i)
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Fatalf("a reply failed with %d", code)
		}
	}
	tk := h.call("GET", "/api/ticket/admin-fetch-one?id="+id, adm.token, nil).ticket(t)
	if n := len(tk["response"].([]any)); n != clients*each || tk["__v"] != float64(clients*each) {
		t.Errorf("responses %d, __v %v; want %d each", n, tk["__v"], clients*each)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	h := newHarness(t)
	h.call("GET", "/healthz", "", nil)
	res, err := http.Get(h.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `ticketd_http_requests_total{code="200",method="GET",route="/healthz"} 1`) {
		t.Errorf("metrics lack the healthz request:\n%s", body)
	}
}

func FuzzCreateBody(f *testing.F) {
	for _, seed := range []string{
		`{"subject":"s","description":"d"}`, `{"category":"Billing","subject":"s","description":"d","priority":"high"}`,
		`{}`, `[]`, `null`, `{"subject":null}`, `{"subject":"\u0000","description":"\ud800"}`, `"str"`, `{"subject":"a"`,
	} {
		f.Add(seed)
	}
	st := storetest.Open(f)
	a, err := api.New(st, api.Options{JWTSecret: secret, MaxBodyBytes: 4096}, nil)
	if err != nil {
		f.Fatal(err)
	}
	handler := a.Handler()
	tok, _ := api.NewToken(secret, bson.NewObjectID(), api.RoleCustomer, "fuzz", time.Hour, time.Now())
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/api/ticket/create", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		var env struct {
			Success *bool  `json:"success"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Success == nil || env.Message == "" {
			t.Fatalf("answer %d is not the envelope: %q", rec.Code, rec.Body.String())
		}
		switch {
		case rec.Code == 201 && *env.Success:
		case rec.Code >= 400 && rec.Code < 500 && !*env.Success:
		default:
			t.Fatalf("body %q: answer %d success=%v", body, rec.Code, *env.Success)
		}
	})
}

// A personal team belongs to one customer: a token naming one is never
// minted, and a signed one is refused, so it cannot reach that customer's
// tickets.
func TestPersonalTeamCannotBeNamedInAToken(t *testing.T) {
	h := newHarness(t)
	victim := h.user(api.RoleCustomer, "")
	h.create(victim, "my own trouble")
	team := store.PersonalTeam(victim.id)
	if _, err := api.NewToken(secret, bson.NewObjectID(), api.RoleCustomer, team, time.Hour, time.Now()); err == nil {
		t.Error("NewToken minted a token for another customer's personal team")
	}
	claims := jwt.MapClaims{"sub": bson.NewObjectID().Hex(), "role": "customer", "team": team, "exp": time.Now().Add(time.Hour).Unix()}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	if a := h.call("GET", "/api/ticket/fetch", tok, nil); a.Code != 401 || strings.Contains(a.Raw, "my own trouble") {
		t.Errorf("token naming a personal team: %d %s, want 401", a.Code, a.Raw)
	}
	if a := h.call("GET", "/api/ticket/fetch", victim.token, nil); a.Code != 200 || len(a.list(t)) != 1 {
		t.Errorf("the owner's own token (no team) must still see the ticket: %d %s", a.Code, a.Raw)
	}
}

// The default body limit admits the largest valid request: a 20,000-emoji
// description (80,000 bytes of UTF-8, 240,000 when every character is
// \u-escaped) with a 200-character subject is created, not 413; one
// character more is refused as too long, not as too large.
func TestDefaultBodyLimitAdmitsLargestValidRequest(t *testing.T) {
	st := storetest.Open(t)
	h := serveAPI(t, st, st, api.Options{JWTSecret: secret})
	c := h.user(api.RoleCustomer, "acme")
	escaped := func(s string) string { // every character as \u escapes, as ASCII-only encoders write it
		var b strings.Builder
		for _, u := range utf16.Encode([]rune(s)) {
			fmt.Fprintf(&b, `\u%04x`, u)
		}
		return b.String()
	}
	subject, emoji := strings.Repeat("😀", 200), strings.Repeat("😀", 20000)
	for name, body := range map[string]string{
		"UTF-8":   fmt.Sprintf(`{"subject":%q,"description":%q,"category":"Technical","priority":"urgent"}`, subject, emoji),
		"escaped": fmt.Sprintf(`{"subject":"%s","description":"%s","category":"Technical","priority":"urgent"}`, escaped(subject), escaped(emoji)),
	} {
		if a := h.call("POST", "/api/ticket/create", c.token, body); a.Code != 201 {
			t.Errorf("%s: valid 20,000-emoji ticket (%d bytes): %d %.200s", name, len(body), a.Code, a.Raw)
		}
	}
	over := fmt.Sprintf(`{"subject":"s","description":"%s"}`, escaped(emoji+"😀"))
	if a := h.call("POST", "/api/ticket/create", c.token, over); a.Code != 400 || !strings.Contains(a.Message, "longer than") {
		t.Errorf("20,001 emoji: %d %.200s, want 400 for the description's length", a.Code, a.Raw)
	}
}

// refusingStore is the real store while its database is full: every write
// and the readiness check fail as the store reports it, store.ErrUnavailable.
type refusingStore struct {
	*store.Store
	mu      sync.Mutex
	refused error
}

func (f *refusingStore) refusal() error { f.mu.Lock(); defer f.mu.Unlock(); return f.refused }

func (f *refusingStore) Ready(ctx context.Context) error {
	if err := f.refusal(); err != nil {
		return err
	}
	return f.Store.Ready(ctx)
}

func (f *refusingStore) CreateTicket(ctx context.Context, in store.NewTicket) (*store.Ticket, bool, error) {
	if err := f.refusal(); err != nil {
		return nil, false, fmt.Errorf("create ticket: %w", err)
	}
	return f.Store.CreateTicket(ctx, in)
}

func (f *refusingStore) AddResponse(ctx context.Context, id bson.ObjectID, scope store.Scope, in store.NewResponse) (*store.Ticket, bool, error) {
	if err := f.refusal(); err != nil {
		return nil, false, fmt.Errorf("update ticket: %w", err)
	}
	return f.Store.AddResponse(ctx, id, scope, in)
}

// A full disk is an outage: writes answer 503 with the envelope and
// Retry-After, never 500, /readyz says not ready while it lasts and ready
// again after.
func TestDiskFullIs503AndNotReady(t *testing.T) {
	fs := &refusingStore{Store: storetest.Open(t)}
	h := serveAPI(t, fs.Store, fs, api.Options{JWTSecret: secret})
	c := h.user(api.RoleCustomer, "acme")
	id := h.create(c, "before the disk filled")["_id"].(string)

	fs.mu.Lock()
	fs.refused = errors.Join(store.ErrUnavailable, errors.New("(InternalError) database or disk is full (13)"))
	fs.mu.Unlock()
	for name, a := range map[string]answer{
		"create": h.call("POST", "/api/ticket/create", c.token, map[string]string{"subject": "s", "description": "d"}),
		"reply":  h.call("POST", "/api/ticket/create-reply?id="+id, c.token, map[string]string{"description": "d"}),
		"readyz": h.call("GET", "/readyz", "", nil),
	} {
		if a.Code != 503 || a.Header.Get("Retry-After") == "" || a.Success || a.Message == "" || strings.Contains(a.Raw, "disk") {
			t.Errorf("%s while the disk is full: %d Retry-After=%q %s; want 503, Retry-After and a plain envelope", name, a.Code, a.Header.Get("Retry-After"), a.Raw)
		}
	}

	fs.mu.Lock()
	fs.refused = nil
	fs.mu.Unlock()
	if a := h.call("GET", "/readyz", "", nil); a.Code != 200 {
		t.Errorf("readyz once writes go through: %d %s", a.Code, a.Raw)
	}
	if a := h.call("POST", "/api/ticket/create", c.token, map[string]string{"subject": "s", "description": "d"}); a.Code != 201 {
		t.Errorf("create once writes go through: %d %s", a.Code, a.Raw)
	}
}

// A degraded optional component (the Slack bridge) keeps /readyz at 200 and
// is named, with its reason, in the body.
func TestReadyzNamesDegradedComponents(t *testing.T) {
	st := storetest.Open(t)
	var state atomic.Pointer[api.ComponentStatus]
	state.Store(&api.ComponentStatus{Name: "slack", State: "connected"})
	h := serveAPI(t, st, st, api.Options{JWTSecret: secret, Components: func() []api.ComponentStatus {
		return []api.ComponentStatus{*state.Load()}
	}})
	if a := h.call("GET", "/readyz", "", nil); a.Code != 200 || a.Message != "ready" || !strings.Contains(string(a.Data), `"connected"`) {
		t.Fatalf("readyz, slack connected: %d %s", a.Code, a.Raw)
	}
	state.Store(&api.ComponentStatus{Name: "slack", State: "degraded", Degraded: true, Reason: "slack.botToken rejected (invalid_auth)"})
	a := h.call("GET", "/readyz", "", nil)
	if a.Code != 200 || !a.Success || a.Message != "ready, degraded: slack: slack.botToken rejected (invalid_auth)" || !strings.Contains(string(a.Data), `"degraded":true`) {
		t.Fatalf("readyz, slack degraded: %d %s", a.Code, a.Raw)
	}
}

// Agents see a ticket's first-response times; customers do not.
func TestFirstResponseShownToAgentsOnly(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	tk, _, err := h.store.CreateTicket(ctx, store.NewTicket{Creator: store.Actor{ID: bson.NewObjectID(), Type: store.CreatorCustomer},
		TeamID: "acme", Category: "Support", Subject: "s", Description: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.store.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{
		Author: store.Actor{ID: bson.NewObjectID(), Type: store.CreatorAdmin}, Description: "on it"}); err != nil {
		t.Fatal(err)
	}
	path := "fetch-one?id=" + tk.ID.Hex()
	fr, ok := h.call("GET", "/api/ticket/admin-"+path, h.user(api.RoleAdmin, "").token, nil).ticket(t)["firstResponse"].(map[string]any)
	if at, _ := fr["respondedAt"].(string); !ok || !strings.HasSuffix(at, "Z") || len(fr) != 1 {
		t.Errorf("agent's view: firstResponse %v, want respondedAt only", fr)
	}
	if a := h.call("GET", "/api/ticket/"+path, h.user(api.RoleCustomer, "acme").token, nil); a.Code != 200 || strings.Contains(a.Raw, "firstResponse") {
		t.Errorf("customer's view: %d %s", a.Code, a.Raw)
	}
}
