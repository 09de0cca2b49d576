package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
)

// The sinks come from the configuration alone.
func TestSinksFollowTheConfiguration(t *testing.T) {
	var c Config
	if s := c.sinks(); len(s) != 0 {
		t.Errorf("nothing enabled: sinks %v", s)
	}
	c.Email.Enabled = true
	if s := c.sinks(); !slices.Equal(s, []string{"email"}) {
		t.Errorf("email enabled: sinks %v", s)
	}
	c.Slack.Enabled = true
	if s := c.sinks(); !slices.Equal(s, []string{"email", "slack"}) {
		t.Errorf("email and slack enabled: sinks %v", s)
	}
}

// A daemon whose configuration gives another set of sinks than a daemon
// still alive on the same store refuses to start, saying why; once that
// daemon is gone it starts and adopts its own set.
func TestServeRefusesADifferentSetOfSinks(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "ticketd.yaml")
	if err := os.WriteFile(cfgPath, []byte("dataDir: "+data+"\nhttp: {listen: 127.0.0.1:0}\nlog: {level: warn}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Another daemon, with email, beat a minute ago.
	ctx := context.Background()
	st, err := store.Open(ctx, store.OpenOptions{DataDir: data, Database: "ticketd"})
	if err != nil {
		t.Fatal(err)
	}
	daemons := st.Database().Collection("daemons")
	if _, err := daemons.InsertOne(ctx, bson.D{{Key: "_id", Value: "other"}, {Key: "host", Value: "box2"}, {Key: "pid", Value: 42},
		{Key: "sinks", Value: bson.A{"email"}}, {Key: "heartbeatAt", Value: time.Now().Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(ctx); err != nil {
		t.Fatal(err)
	}

	err = cmdServe(ctx, []string{"-config", cfgPath}, testLog{t}, noEnv, nil)
	if err == nil || !strings.Contains(err.Error(), "box2") || !strings.Contains(err.Error(), "[email]") || !strings.Contains(err.Error(), "same configuration") {
		t.Fatalf("serve with another set of sinks: %v", err)
	}

	// The other daemon stops beating (it crashed long ago): this one starts.
	st, err = store.Open(ctx, store.OpenOptions{DataDir: data, Database: "ticketd"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Database().Collection("daemons").UpdateOne(ctx, bson.D{{Key: "_id", Value: "other"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "heartbeatAt", Value: time.Now().Add(-time.Hour)}}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, stop := startServe(t, dir)
	if err := stop(); err != nil {
		t.Fatalf("serve after the other daemon died: %v", err)
	}
}
