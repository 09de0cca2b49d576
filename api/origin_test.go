package api_test

import (
	"context"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/store"
)

// Every change made through the API is announced with origin api, so that
// each sink can tell it from its own channel's echoes.
func TestChangesThroughTheAPIHaveOriginAPI(t *testing.T) {
	h := newHarness(t)
	c := h.user(api.RoleCustomer, "acme")
	adm := h.user(api.RoleAdmin, "")
	id := h.create(c, "x")["_id"].(string)
	if a := h.call("POST", "/api/ticket/admin-create-reply?id="+id, adm.token, map[string]string{"description": "hi"}); a.Code != 200 {
		t.Fatalf("reply: %d %s", a.Code, a.Raw)
	}
	if a := h.call("PATCH", "/api/ticket/admin-update?id="+id, adm.token, map[string]string{"status": "resolved", "priority": "high"}); a.Code != 200 {
		t.Fatalf("update: %d %s", a.Code, a.Raw)
	}
	oid, _ := bson.ObjectIDFromHex(id)
	tk, err := h.store.Ticket(context.Background(), oid, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range tk.Outbox {
		got = append(got, string(e.Kind)+"<"+string(e.Origin))
	}
	if want := "ticket.created<api response.added<api status.changed<api priority.changed<api"; strings.Join(got, " ") != want {
		t.Errorf("events %s, want %s", strings.Join(got, " "), want)
	}
}
