package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ticketd/ticketd/internal/testwait"
)

func TestJobsConfigReportsBadValuesWithTheirKeys(t *testing.T) {
	p := writeFile(t, `
jobs:
  timeZone: Mars/Olympus
  leaseTTL: 1s
  autoClose: {enabled: true, schedule: "every hour", autoCloseAfter: 5m}
  retention: {schedule: "61 * * * *", deliveredKeys: 1m, deadLetters: -1h}
  outboxSweep: {schedule: ""}
`)
	_, err := loadConfig(p, noEnv)
	if err == nil {
		t.Fatal("invalid jobs config accepted")
	}
	for _, key := range []string{"jobs.timeZone", "jobs.leaseTTL", "jobs.autoClose.schedule", "jobs.autoClose.autoCloseAfter",
		"jobs.retention.schedule", "jobs.retention.deliveredKeys", "jobs.retention.deadLetters", "jobs.outboxSweep.schedule"} {
		if !strings.Contains(err.Error(), "  "+key+": ") {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	if strings.Contains(err.Error(), "jobs.retention.ignoredMail") {
		t.Errorf("a default value was reported:\n%v", err)
	}
}

type jobListing struct {
	Name     string  `json:"name"`
	Schedule string  `json:"schedule"`
	Enabled  bool    `json:"enabled"`
	NextRun  *string `json:"nextRun"`
	LastRun  *struct {
		Outcome string `json:"outcome"`
		Holder  string `json:"holder"`
		Token   int64  `json:"token"`
	} `json:"lastRun"`
}

// The daemon schedules its jobs: the outbox sweep (every second here)
// runs, shows in admin-jobs and is counted in /metrics; a disabled job is
// listed without a next run; the first-response job is scheduled when on.
func TestServeRunsAndListsJobs(t *testing.T) {
	dir := t.TempDir()
	cfg := fmt.Sprintf(`dataDir: %s
http: {listen: 127.0.0.1:0}
log: {level: warn}
jobs:
  outboxSweep: {enabled: true, schedule: "@every 1s"}
  retention: {enabled: false}
  firstResponse: {enabled: true, schedule: "*/5 * * * *"}
`, filepath.Join(dir, "data"))
	if err := os.WriteFile(filepath.Join(dir, "ticketd.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	base, stop := startServe(t, dir)
	defer stop()
	adm := mint(t, dir, "-role", "admin")
	list := func() map[string]jobListing {
		req, _ := http.NewRequest("GET", base+"/api/ticket/admin-jobs", nil)
		req.Header.Set("Authorization", "Bearer "+adm)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct {
			Data []jobListing `json:"data"`
		}
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != 200 {
			t.Fatalf("admin-jobs: %d %v", res.StatusCode, err)
		}
		out := map[string]jobListing{}
		for _, j := range body.Data {
			out[j.Name] = j
		}
		return out
	}
	testwait.For(t, "a recorded outbox sweep", func() bool {
		r := list()["outboxSweep"].LastRun
		return r != nil && r.Outcome == "ok"
	})
	jobs := list()
	if len(jobs) != 4 {
		t.Errorf("jobs: %+v", jobs)
	}
	if j := jobs["first-response"]; !j.Enabled || j.NextRun == nil || j.Schedule != "*/5 * * * *" {
		t.Errorf("first-response: %+v", j)
	}
	if j := jobs["retention"]; j.Enabled || j.NextRun != nil || j.Schedule != "17 * * * *" {
		t.Errorf("disabled retention: %+v", j)
	}
	if j := jobs["autoClose"]; !j.Enabled || j.NextRun == nil || j.Schedule != "@hourly" {
		t.Errorf("auto-close: %+v", j)
	}
	if r := jobs["outboxSweep"].LastRun; r.Holder == "" || r.Token < 1 {
		t.Errorf("sweep run: %+v", r)
	}
	// The run is recorded before it is counted: wait for the count.
	testwait.For(t, "the sweep counted in /metrics", func() bool {
		return strings.Contains(string(scrape(t, base)), `ticketd_job_runs_total{job="outboxSweep",outcome="ok"}`)
	})
	wantMetrics(t, string(scrape(t, base)),
		`ticketd_job_duration_seconds_count{job="outboxSweep"}`,
		`ticketd_first_response_total`)
}
