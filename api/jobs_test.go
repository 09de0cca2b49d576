package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

func TestAdminJobsListsJobs(t *testing.T) {
	st := storetest.Open(t)
	slot := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	var listErr error
	h := serveAPI(t, st, st, api.Options{JWTSecret: secret, Jobs: func(context.Context) ([]api.JobStatus, error) {
		return []api.JobStatus{
			{Name: "autoClose", Schedule: "@hourly", Enabled: true, NextRun: slot.Add(time.Hour), Holder: "d1",
				LastRun: &api.JobRunStatus{Slot: slot, StartedAt: slot.Add(time.Millisecond), FinishedAt: slot.Add(2 * time.Second),
					Duration: 1999 * time.Millisecond, Outcome: "failed", Error: "store unavailable", Holder: "d2", Token: 7}},
			{Name: "retention", Schedule: "17 * * * *"},
		}, listErr
	}})
	adm := h.user(api.RoleAdmin, "")
	a := h.call("GET", "/api/ticket/admin-jobs", adm.token, nil)
	if a.Code != 200 || !a.Success {
		t.Fatalf("admin-jobs: %d %s", a.Code, a.Raw)
	}
	var got []json.RawMessage
	if err := json.Unmarshal(a.Data, &got); err != nil || len(got) != 2 {
		t.Fatalf("data: %s", a.Raw)
	}
	want := []string{
		`{"name":"autoClose","schedule":"@hourly","enabled":true,"nextRun":"2026-03-02T09:00:00.000Z","holder":"d1","lastRun":{"slot":"2026-03-02T08:00:00.000Z","startedAt":"2026-03-02T08:00:00.001Z","finishedAt":"2026-03-02T08:00:02.000Z","durationMs":1999,"outcome":"failed","error":"store unavailable","holder":"d2","token":7}}`,
		`{"name":"retention","schedule":"17 * * * *","enabled":false,"nextRun":null,"holder":"","lastRun":null}`,
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("job %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if c := h.user(api.RoleCustomer, "acme"); h.call("GET", "/api/ticket/admin-jobs", c.token, nil).Code != 403 {
		t.Error("a customer may list jobs")
	}
	listErr = errors.Join(store.ErrUnavailable, errors.New("no server"))
	if a := h.call("GET", "/api/ticket/admin-jobs", adm.token, nil); a.Code != 503 || a.Success {
		t.Errorf("store down: %d %s", a.Code, a.Raw)
	}
}
