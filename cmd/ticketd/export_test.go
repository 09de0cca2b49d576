package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ticketd/ticketd/store"
)

// countTickets opens the embedded store in dataDir and counts its tickets.
func countTickets(t *testing.T, dataDir string) int64 {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, store.OpenOptions{DataDir: dataDir, Database: "ticketd"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	_, total, err := s.ListTickets(ctx, store.AllTickets, store.ListQuery{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// `ticketd backup` copies the store of a running daemon; the copy, put
// where the store lives, is a store with the tickets written before.
func TestBackupCommandWhileServing(t *testing.T) {
	dir := t.TempDir()
	base, stop := startServe(t, dir)
	tok := mint(t, dir, "-role", "customer", "-team", "acme")
	for i := range 3 {
		post(t, base+"/api/ticket/create", tok, fmt.Sprintf(`{"subject":"before %d","description":"d"}`, i))
	}
	out := filepath.Join(dir, "backups", "ticketd.sqlite")
	os.Mkdir(filepath.Dir(out), 0o700)
	var errb bytes.Buffer
	if err := run(context.Background(), []string{"backup", "-config", filepath.Join(dir, "ticketd.yaml"), "-out", out}, &errb, &errb, noEnv); err != nil {
		t.Fatalf("backup: %v\n%s", err, errb.String())
	}
	post(t, base+"/api/ticket/create", tok, `{"subject":"after","description":"d"}`)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	restored := filepath.Join(t.TempDir(), "data")
	os.Mkdir(restored, 0o700)
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(store.EmbeddedFile(restored, "ticketd"), raw, 0o600)
	if n := countTickets(t, restored); n != 3 {
		t.Errorf("the backup holds %d tickets, want the 3 written before it", n)
	}

	mongo := func(k string) string {
		if k == "MONGODB_URI" {
			return "mongodb://127.0.0.1:1/"
		}
		return ""
	}
	cfg := filepath.Join(dir, "mongo.yaml")
	os.WriteFile(cfg, []byte("auth: {jwtSecret: 0123456789abcdef0123456789abcdef}\n"), 0o600)
	if err := run(context.Background(), []string{"backup", "-config", cfg, "-out", out + "2"}, &errb, &errb, mongo); err == nil || !strings.Contains(err.Error(), "mongodump") {
		t.Errorf("backup of a MongoDB store: %v", err)
	}
}

// export then import moves a store; importing again needs -force; a
// broken file is refused with its line.
func TestExportImportCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfgFor := func(name string) string {
		p := filepath.Join(dir, name+".yaml")
		os.WriteFile(p, []byte("dataDir: "+filepath.Join(dir, name)+"\n"), 0o600)
		return p
	}
	from, to := cfgFor("from"), cfgFor("to")
	s, err := store.Open(ctx, store.OpenOptions{DataDir: filepath.Join(dir, "from"), Database: "ticketd"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, _, err := s.CreateTicket(ctx, store.NewTicket{Creator: store.Actor{Type: store.CreatorCustomer}, TeamID: "t", Subject: fmt.Sprint("s", i), Source: store.SourceAPI}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close(ctx)

	file := filepath.Join(dir, "export.jsonl")
	var out, errb bytes.Buffer
	cmd := func(args ...string) error {
		out.Reset()
		errb.Reset()
		return run(ctx, args, &out, &errb, noEnv)
	}
	if err := cmd("export", "-config", from, "-out", file); err != nil {
		t.Fatalf("export: %v\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), "tickets 2") {
		t.Errorf("export reported %q", errb.String())
	}
	if err := cmd("import", "-check", file); err != nil || !strings.Contains(errb.String(), "ok") {
		t.Errorf("import -check: %v %q", err, errb.String())
	}
	if err := cmd("import", "-config", to, file); err != nil {
		t.Fatalf("import: %v\n%s", err, errb.String())
	}
	if n := countTickets(t, filepath.Join(dir, "to")); n != 2 {
		t.Errorf("%d tickets imported, want 2", n)
	}
	if err := cmd("import", "-config", to, file); err == nil || !strings.Contains(err.Error(), "-force") {
		t.Errorf("a second import: %v", err)
	}
	if err := cmd("import", "-config", to, "-force", file); err != nil {
		t.Errorf("import -force: %v\n%s", err, errb.String())
	}

	raw, _ := os.ReadFile(file)
	broken := filepath.Join(dir, "broken.jsonl")
	os.WriteFile(broken, bytes.Replace(raw, []byte(`"collection":"tickets"`), []byte(`"collection":"ticket"`), 1), 0o600)
	if err := cmd("import", "-config", to, "-force", broken); err == nil || !strings.Contains(err.Error(), `line 2: invalid: unknown collection "ticket"`) {
		t.Errorf("a broken file: %v", err)
	}
}
