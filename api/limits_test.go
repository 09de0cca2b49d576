package api_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// The API checks text with the store's limits (store.Limits, configured
// once, on the store), so an API answer and the store never disagree:
// over-long text is refused with 400 and the reason, never cut.
func TestAPIUsesTheStoresLimits(t *testing.T) {
	st, _ := storetest.OpenWith(t, store.OpenOptions{Limits: store.Limits{MaxSubject: 10, MaxDescription: 20}})
	a, err := api.New(st, api.Options{JWTSecret: secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	h := &harness{t: t, srv: srv, store: st}
	c := h.user(api.RoleCustomer, "acme")

	for _, tt := range []struct{ name, subject, description, message string }{
		{"subject over the store's limit", "12345678901", "d", "subject is longer than 10 characters"},
		{"description over the store's limit", "s", strings.Repeat("é", 21), "description is longer than 20 characters"},
		{"NUL subject", "\u0000\u0000", "d", "subject is required"},
		{"invisible subject", "\u202e\u200b", "d", "subject is required"},
		{"control characters only", "\u001b\t\u0007\ufeff", "d", "subject is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ans := h.call("POST", "/api/ticket/create", c.token, map[string]string{"subject": tt.subject, "description": tt.description})
			if ans.Code != 400 || ans.Success || ans.Message != tt.message {
				t.Errorf("got %d %s, want 400 %q in the envelope", ans.Code, ans.Raw, tt.message)
			}
		})
	}

	tk := h.call("POST", "/api/ticket/create", c.token, map[string]string{"subject": "\u200b Ünïcødé\u0000 1 ", "description": strings.Repeat("é", 20)})
	if tk.Code != 201 || tk.ticket(t)["subject"] != "Ünïcødé 1" {
		t.Fatalf("create at the limits: %d %s", tk.Code, tk.Raw)
	}
	id := tk.ticket(t)["_id"].(string)
	if ans := h.call("POST", "/api/ticket/create-reply?id="+id, c.token, map[string]string{"description": strings.Repeat("x", 21)}); ans.Code != 400 || ans.Message != "description is longer than 20 characters" {
		t.Errorf("long reply: %d %s", ans.Code, ans.Raw)
	}
}
