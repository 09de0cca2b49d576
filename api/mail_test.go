package api_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/store"
)

func (h *harness) raw(path, token string) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestAttachmentDownloadIsScoped(t *testing.T) {
	h := newHarness(t)
	ann := h.user(api.RoleCustomer, "acme")
	eve := h.user(api.RoleCustomer, "evil")
	adm := h.user(api.RoleAdmin, "")
	id, _ := bson.ObjectIDFromHex(h.create(ann, "with file")["_id"].(string))
	f := store.AttachmentFile{Attachment: store.Attachment{ID: bson.NewObjectID(), Filename: "report <1>.html", ContentType: "text/html"},
		TicketID: id, Data: []byte("<script>alert(1)</script>")}
	if err := h.store.SaveAttachment(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{ann.token, adm.token} {
		res, body := h.raw("/api/ticket/attachment?id="+f.ID.Hex(), tok)
		if res.StatusCode != 200 || body != string(f.Data) ||
			res.Header.Get("Content-Type") != "application/octet-stream" ||
			!strings.HasPrefix(res.Header.Get("Content-Disposition"), "attachment;") {
			t.Errorf("download: %d %q %v", res.StatusCode, body, res.Header)
		}
	}
	if a := h.call("GET", "/api/ticket/attachment?id="+f.ID.Hex(), eve.token, nil); a.Code != 404 || a.Message != "Attachment not found" {
		t.Errorf("another team's attachment: %d", a.Code)
	}
}

func TestDeadLettersQuarantineAndIgnoredRoutes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.user(api.RoleCustomer, "acme")
	adm := h.user(api.RoleAdmin, "")
	h.create(c, "x")
	if _, err := h.store.JoinDeployment(ctx, []string{"email"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.RelayAll(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := h.store.ClaimDelivery(ctx, "email", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.KillDelivery(ctx, d, errors.New("550 no such user")); err != nil {
		t.Fatal(err)
	}
	dead := h.call("GET", "/api/ticket/admin-deliveries", adm.token, nil).list(t)
	if len(dead) != 1 || dead[0]["_id"] != d.ID || dead[0]["lastError"] != "550 no such user" || dead[0]["kind"] != "ticket.created" {
		t.Fatalf("dead letters: %v", dead)
	}
	if a := h.call("POST", "/api/ticket/admin-requeue?id="+d.ID, adm.token, nil); a.Code != 200 {
		t.Errorf("requeue: %d %s", a.Code, a.Raw)
	}
	if n := len(h.call("GET", "/api/ticket/admin-deliveries?state=dead", adm.token, nil).list(t)); n != 0 {
		t.Errorf("%d dead after requeue", n)
	}
	if a := h.call("POST", "/api/ticket/admin-requeue?id=nope", adm.token, nil); a.Code != 404 || a.Message != "No dead delivery with this id" {
		t.Errorf("requeue unknown: %d %q", a.Code, a.Message)
	}
	if a := h.call("GET", "/api/ticket/admin-deliveries?state=lost", adm.token, nil); a.Code != 400 {
		t.Errorf("bad state: %d", a.Code)
	}

	q := store.QuarantinedMail{ID: "INBOX/1/7", Mailbox: "INBOX", UID: 7, Reason: "not a mail: no From", Raw: []byte("garbage\r\n"), Size: 9}
	if err := h.store.Quarantine(ctx, q); err != nil {
		t.Fatal(err)
	}
	a := h.call("GET", "/api/ticket/admin-quarantine", adm.token, nil)
	if l := a.list(t); len(l) != 1 || l[0]["reason"] != q.Reason || *a.Total != 1 || strings.Contains(a.Raw, "garbage") {
		t.Errorf("quarantine list (without raw bytes): %s", a.Raw)
	}
	if res, body := h.raw("/api/ticket/admin-quarantine-raw?id=INBOX/1/7", adm.token); res.StatusCode != 200 || body != "garbage\r\n" || res.Header.Get("Content-Type") != "message/rfc822" {
		t.Errorf("raw: %d %q", res.StatusCode, body)
	}
	if a := h.call("GET", "/api/ticket/admin-quarantine-raw?id=INBOX/9/9", adm.token, nil); a.Code != 404 {
		t.Errorf("unknown quarantined message: %d", a.Code)
	}
	if err := h.store.RecordIgnored(ctx, store.IgnoredMail{ID: "k1", Mailbox: "INBOX", Reason: "automatic mail: auto-submitted: auto-replied", From: "bot@x"}); err != nil {
		t.Fatal(err)
	}
	if l := h.call("GET", "/api/ticket/admin-ignored", adm.token, nil).list(t); len(l) != 1 || l[0]["from"] != "bot@x" {
		t.Errorf("ignored: %v", l)
	}
	for _, p := range []string{"/api/ticket/admin-quarantine", "/api/ticket/admin-ignored", "/api/ticket/admin-deliveries"} {
		if a := h.call("GET", p, c.token, nil); a.Code != 403 {
			t.Errorf("customer on %s: %d", p, a.Code)
		}
	}
}
