package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ticketd/ticketd/store"
)

// A backup taken while tickets keep being written opens as a store of its
// own and lists every ticket written before it started, each whole.
func TestBackupWhileWriting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	live, err := store.Open(ctx, store.OpenOptions{DataDir: filepath.Join(dir, "live"), Database: "ticketd"}) // embedded, whatever MONGODB_URI says
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close(ctx)
	first := newTicket(t, live, "team-a", "before the backup")
	if _, _, err := live.AddResponse(ctx, first.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "an answer"}); err != nil {
		t.Fatal(err)
	}

	// A writer keeps creating tickets until told to stop.
	var written atomic.Int64
	written.Store(1)
	stop, done, underway := make(chan struct{}), make(chan error, 1), make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, _, err := live.CreateTicket(ctx, store.NewTicket{Creator: alice, TeamID: "team-a", Subject: fmt.Sprint("during ", i), Description: "d", Source: store.SourceAPI}); err != nil {
				done <- err
				return
			}
			if written.Add(1) == 20 {
				close(underway)
			}
		}
	}()
	select {
	case <-underway:
	case err := <-done:
		t.Fatal(err)
	}
	before := written.Load()
	out := filepath.Join(dir, "backups", "ticketd.sqlite")
	os.MkdirAll(filepath.Dir(out), 0o700)
	size, err := store.Backup(ctx, filepath.Join(dir, "live"), "ticketd", out)
	after := written.Load()
	close(stop)
	if werr := <-done; werr != nil {
		t.Fatal(werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != size || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, size %d (reported %d), mode %v", err, fi.Size(), size, fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "backups", ".ticketd-backup-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	t.Logf("tickets written before the backup: %d, when it returned: %d", before, after)

	// The copy is a store: reopen it where a restore would put it.
	restored := filepath.Join(dir, "restored")
	os.MkdirAll(restored, 0o700)
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store.EmbeddedFile(restored, "ticketd"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	copyStore, err := store.Open(ctx, store.OpenOptions{DataDir: restored, Database: "ticketd"})
	if err != nil {
		t.Fatal(err)
	}
	defer copyStore.Close(ctx)
	tickets, total, err := copyStore.ListTickets(ctx, store.AllTickets, store.ListQuery{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if total < before || total > after || len(tickets) != 1 {
		t.Errorf("the copy lists %d tickets; %d were written before the backup and %d when it returned", total, before, after)
	}
	n, err := copyStore.Database().Collection("tickets").CountDocuments(ctx, map[string]any{})
	if err != nil || n != total {
		t.Errorf("the copy holds %d ticket documents (%v), lists %d", n, err, total)
	}
	got, err := copyStore.Ticket(ctx, first.ID, store.AllTickets)
	if err != nil || len(got.Response) != 1 || got.Response[0].Description != "an answer" || got.Subject != "before the backup" {
		t.Errorf("the first ticket in the copy: %+v %v", got, err)
	}
}

func TestBackupRefusesTheLiveFileAndAMissingStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := store.Open(ctx, store.OpenOptions{DataDir: dir, Database: "ticketd"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if _, err := store.Backup(ctx, dir, "ticketd", store.EmbeddedFile(dir, "ticketd")); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("backing up onto the live database: %v", err)
	}
	if _, err := store.Backup(ctx, dir, "other", filepath.Join(t.TempDir(), "x.sqlite")); err == nil {
		t.Error("backing up a database that does not exist succeeded")
	}
}
