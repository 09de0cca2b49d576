package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// testLog shows the daemon's log lines with the test's output, on failure.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startServe runs `ticketd serve` in-process with a config for dir and
// returns its base URL and a stop function that returns serve's error.
func startServe(t *testing.T, dir string) (string, func() error) {
	t.Helper()
	cfgPath := filepath.Join(dir, "ticketd.yaml")
	if _, err := os.Stat(cfgPath); err != nil { // a test may have written its own
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("dataDir: %s\nhttp: {listen: 127.0.0.1:0}\nlog: {level: warn}\n", filepath.Join(dir, "data"))), 0o600)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- cmdServe(ctx, []string{"-config", cfgPath}, testLog{t}, noEnv, &serveHooks{listening: func(a string) { addr <- a }})
	}()
	select {
	case a := <-addr:
		return "http://" + a, func() error { cancel(); return <-done }
	case err := <-done:
		cancel()
		t.Fatalf("serve exited: %v", err)
	case <-time.After(time.Minute):
		cancel()
		t.Fatal("serve did not start")
	}
	return "", nil
}

func mint(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cfgPath := filepath.Join(dir, "ticketd.yaml")
	var out, errb bytes.Buffer
	if err := run(context.Background(), append([]string{"token", "-config", cfgPath}, args...), &out, &errb, noEnv); err != nil {
		t.Fatalf("token: %v %s", err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

func post(t *testing.T, url, token, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	json.NewDecoder(res.Body).Decode(&m)
	if res.StatusCode >= 300 {
		t.Fatalf("POST %s: %d %v", url, res.StatusCode, m)
	}
	return m
}

func TestServeMintedTokensWorkAndDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	base, stop := startServe(t, dir)
	tok := mint(t, dir, "-role", "customer", "-team", "acme")
	created := post(t, base+"/api/ticket/create", tok, `{"subject":"Account Issue","description":"I am facing an issue with my account."}`)
	id := created["data"].(map[string]any)["_id"].(string)
	if err := stop(); err != nil {
		t.Fatalf("serve returned %v after shutdown", err)
	}
	info, err := os.Stat(filepath.Join(dir, "data", "jwt-secret"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("generated secret: %v mode %v", err, info.Mode().Perm())
	}

	base, stop = startServe(t, dir)
	defer stop()
	adm := mint(t, dir, "-role", "admin")
	reply := post(t, base+"/api/ticket/admin-create-reply?id="+id, adm, `{"description":"We are looking into it."}`)
	if reply["message"] != "Response added successfully!" {
		t.Errorf("reply after restart: %v", reply)
	}
}

func TestSubcommandsAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errb, noEnv); err != nil || !strings.HasPrefix(out.String(), "ticketd ") {
		t.Errorf("version: %v %q", err, out.String())
	}
	for _, cmd := range []string{"serve", "token", "check-config"} {
		errb.Reset()
		err := run(context.Background(), []string{cmd, "-help"}, &out, &errb, noEnv)
		if err == nil || !strings.Contains(errb.String(), "Usage: ticketd "+cmd) {
			t.Errorf("%s -help: %v %q", cmd, err, errb.String())
		}
	}
	if err := run(context.Background(), []string{"bogus"}, &out, &errb, noEnv); err != errUsage {
		t.Errorf("unknown command: %v", err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"check-config", "../../config.example.yaml"}, &out, &errb, noEnv); err != nil || !strings.Contains(out.String(), "ok") {
		t.Errorf("check-config example: %v %q", err, out.String())
	}
	bad := writeFile(t, "log: {level: loud}\n")
	if err := run(context.Background(), []string{"check-config", bad}, &out, &errb, noEnv); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Errorf("check-config bad file: %v", err)
	}
	if err := run(context.Background(), []string{"token", "-role", "root", "-config", writeFile(t, "dataDir: "+t.TempDir()+"\n")}, &out, &errb, noEnv); err == nil {
		t.Error("token with a bad role accepted")
	}
	personal := []string{"token", "-role", "customer", "-team", "personal:" + bson.NewObjectID().Hex(), "-config", writeFile(t, "dataDir: "+t.TempDir()+"\n")}
	if err := run(context.Background(), personal, &out, &errb, noEnv); err == nil || !strings.Contains(err.Error(), "-team") {
		t.Errorf("token for another customer's personal team: %v, want a refusal of -team", err)
	}
	if err := run(context.Background(), []string{"serve", "-config", bad}, &out, &errb, noEnv); err == nil {
		t.Error("serve started on an invalid config")
	}
}

// TestSIGTERMExitsCleanly runs the real binary: SIGTERM must stop it with
// exit status 0 and an orderly shutdown log.
func TestSIGTERMExitsCleanly(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ticketd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "ticketd.yaml")
	os.WriteFile(cfg, []byte("dataDir: "+filepath.Join(dir, "data")+"\nhttp: {listen: 127.0.0.1:0}\n"), 0o600)
	cmd := exec.Command(bin, "serve", "-config", cfg)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	listen := regexp.MustCompile(`listen=(\S+)`)
	var addr string
	var log strings.Builder
	for lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		if m := listen.FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	if addr == "" {
		cmd.Process.Kill()
		t.Fatalf("no listen line:\n%s", log.String())
	}
	if res, err := http.Get("http://" + addr + "/readyz"); err != nil || res.StatusCode != 200 {
		t.Fatalf("readyz: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	// The log is read to its end before Wait (which closes the pipe), and
	// only then looked at: the reader owns it until it is done.
	errc := make(chan error, 1)
	go func() {
		for lines.Scan() {
			log.WriteString(lines.Text() + "\n")
		}
		errc <- cmd.Wait()
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-errc
		t.Fatal("no exit within 30s of SIGTERM")
	}
	if !strings.Contains(log.String(), "shutting down") || !strings.Contains(log.String(), "msg=stopped") {
		t.Errorf("shutdown not logged in order:\n%s", log.String())
	}
}
