//go:build dovecot

package email

// End-to-end against a real Dovecot: go test -tags dovecot ./ingest/email/
// The test writes its own configuration into a temporary directory, runs
// /usr/sbin/dovecot in the foreground as the current user (root in CI; the
// mail itself is kept as Dovecot's unprivileged user, as Dovecot insists),
// and talks to it over IMAP with IDLE. A missing Dovecot fails the test.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/ticketd/ticketd/internal/replytoken"
)

const dovecotBin = "/usr/sbin/dovecot"

type dovecot struct {
	port int
	dir  string
}

func startDovecot(t *testing.T) *dovecot {
	t.Helper()
	if _, err := os.Stat(dovecotBin); err != nil {
		t.Fatalf("%s not found (%v): install it with: apt-get install -y dovecot-imapd", dovecotBin, err)
	}
	dir := t.TempDir()
	// Dovecot never accesses mail as root: the mail is kept as its
	// unprivileged user, who must be able to reach the temporary directory.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mailUser, err := user.Lookup(internalUser(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	for _, d := range []string{"run", "state", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(mailUser.Uid)
	gid, _ := strconv.Atoi(mailUser.Gid)
	if err := os.Chown(filepath.Join(dir, "home"), uid, gid); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "dovecot.conf")
	cfg := fmt.Sprintf(`# written by dovecot_test.go
base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = ticketd-test-%[2]d
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = %[1]s/dovecot.log
info_log_path = %[1]s/dovecot.log
first_valid_uid = 0
first_valid_gid = 0
default_login_user = %[3]s
default_internal_user = %[3]s
mail_location = maildir:%[1]s/home/%%u/Maildir
# static: the auth process runs as %[3]s and cannot read t.TempDir()
passdb {
  driver = static
  args = password=%[4]s
}
userdb {
  driver = static
  args = uid=%[5]s gid=%[6]s home=%[1]s/home/%%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
`, dir, port, internalUser(t), testPassword, mailUser.Uid, mailUser.Gid)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(dovecotBin, "-n", "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("dovecot -n rejects the config: %v\n%s", err, out)
	}
	cmd := exec.Command(dovecotBin, "-F", "-c", conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "dovecot.log")); err == nil {
				t.Logf("dovecot.log:\n%s", b)
			}
		}
	})
	// On failure the cleanup above prints dovecot.log.
	waitFor(t, fmt.Sprintf("dovecot to listen on %d", port), func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return &dovecot{port: port, dir: dir}
}

// internalUser is the unprivileged user Dovecot's package creates.
func internalUser(t *testing.T) string {
	for _, name := range []string{"dovecot", "dovenull"} {
		if _, err := user.Lookup(name); err == nil {
			return name
		}
	}
	t.Fatal("neither user dovecot nor dovenull exists: apt-get install -y dovecot-imapd")
	return ""
}

// login opens a client session as the test user.
func (d *dovecot) login(t *testing.T) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(fmt.Sprintf("127.0.0.1:%d", d.port), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(testUser, testPassword).Wait(); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// deliverer appends mail over IMAP, as an MTA's LDA would drop it.
func (d *dovecot) appendMail(t *testing.T, raw []byte) {
	t.Helper()
	c := d.login(t)
	defer c.Close()
	cmd := c.Append("INBOX", int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("append: %v", err)
	}
	_ = c.Logout().Wait()
}

// mailbox returns how many messages a mailbox holds and how many are \Seen.
func (d *dovecot) mailbox(t *testing.T, name string) (total, seen uint32) {
	t.Helper()
	c := d.login(t)
	defer c.Close()
	st, err := c.Status(name, &imap.StatusOptions{NumMessages: true, NumUnseen: true}).Wait()
	if err != nil {
		return 0, 0
	}
	return *st.NumMessages, *st.NumMessages - *st.NumUnseen
}

func TestDovecotEndToEnd(t *testing.T) {
	d := startDovecot(t)
	st := newStore(t)
	log := &logRecord{}
	o := Options{
		Accounts: []Account{{
			Host: "127.0.0.1", Port: d.port, TLS: TLSPlain,
			Username: testUser, Password: testPassword,
			ProcessedMailbox: "Processed",
		}},
		PollSchedule:     "@every 1h", // only IDLE can wake it
		ReplyBaseAddress: testBase,
		ReplySigner:      replytoken.New(testSecret),
		OwnAddresses:     []string{testBase},
		ReconnectMin:     50 * time.Millisecond,
		Logger:           slog.New(recordingHandler{Handler: testLog(t).Handler(), rec: log}),
	}
	src := startSource(t, st, o)
	waitFor(t, "the source to IDLE", func() bool { return log.count(logIdling) > 0 })

	// New mail opens a ticket, woken by IDLE.
	start := time.Now()
	d.appendMail(t, testMail{subject: "Dovecot: printer on fire", msgID: "<dove1@customer.test>", body: "It burns.\r\n"}.bytes())
	tk := ticketWithSubject(t, st, "Dovecot: printer on fire")
	t.Logf("APPEND -> ticket over Dovecot IDLE: %s", time.Since(start))
	if !strings.Contains(tk.Description, "It burns.") {
		t.Errorf("description = %q", tk.Description)
	}

	// A reply by In-Reply-To becomes a response.
	d.appendMail(t, testMail{subject: "Re: Dovecot: printer on fire", headers: []string{"In-Reply-To: <dove1@customer.test>"}, body: "Still burning.\r\n"}.bytes())
	waitFor(t, "the response", func() bool { return len(loadTicket(t, st, tk.ID).Response) == 1 })
	// A reply by token too.
	d.appendMail(t, testMail{to: replytoken.New(testSecret).Address(testBase, tk.ID), subject: "token reply", body: "Token.\r\n"}.bytes())
	waitFor(t, "the token response", func() bool { return len(loadTicket(t, st, tk.ID).Response) == 2 })

	// Everything was moved to Processed, flagged \Seen.
	waitFor(t, "messages moved", func() bool {
		inbox, _ := d.mailbox(t, "INBOX")
		total, seen := d.mailbox(t, "Processed")
		return inbox == 0 && total == 3 && seen == 3
	})
	if n := ticketCount(t, st); n != 1 {
		t.Errorf("%d tickets, want 1", n)
	}
	if s := src.Stats(); s.Tickets != 1 || s.Responses != 2 || s.Reconnects != 0 {
		t.Errorf("stats = %+v", s)
	}
}

// logRecord keeps the messages a Source logs, at every level, so a test can
// wait for what the Source says it did.
type logRecord struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecord) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// recordingHandler records every message into rec and passes it on to
// Handler when that wants its level.
type recordingHandler struct {
	slog.Handler
	rec *logRecord
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h recordingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.rec.mu.Lock()
	h.rec.msgs = append(h.rec.msgs, r.Message)
	h.rec.mu.Unlock()
	if h.Handler.Enabled(ctx, r.Level) {
		return h.Handler.Handle(ctx, r)
	}
	return nil
}

func (h recordingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recordingHandler{Handler: h.Handler.WithAttrs(as), rec: h.rec}
}

func (h recordingHandler) WithGroup(name string) slog.Handler {
	return recordingHandler{Handler: h.Handler.WithGroup(name), rec: h.rec}
}
