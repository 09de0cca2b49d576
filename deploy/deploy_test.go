// Package deploy_test checks the deployment recipes against the code they
// deploy: the systemd unit with systemd-analyze, the container recipe by
// running its build command and checking its invariants (no container
// engine is needed).
package deploy_test

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// ticketd is built once, with the container recipe's own build command.
var ticketd string

const stamp = "v0.0.0-deploy-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ticketd-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ticketd = filepath.Join(dir, "ticketd")
	code := 1
	if err := buildLikeTheRecipe(ticketd); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// instruction is one line of a Containerfile, continuations joined.
type instruction struct{ cmd, args string }

// recipe reads deploy/Containerfile into its stages.
func recipe() ([][]instruction, error) {
	raw, err := os.ReadFile("Containerfile")
	if err != nil {
		return nil, err
	}
	var stages [][]instruction
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(l + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			return nil, fmt.Errorf("Containerfile: %s before FROM", in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	return stages, sc.Err()
}

func find(stage []instruction, cmd string) []string {
	var out []string
	for _, in := range stage {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// goBuild is the build stage's `go build` command and the path it writes.
func goBuild(stages [][]instruction) (cmd, out string, err error) {
	for _, run := range find(stages[0], "RUN") {
		if strings.Contains(run, "go build") {
			m := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(run)
			if m == nil {
				return "", "", fmt.Errorf("the build command names no output (-o): %s", run)
			}
			return run, m[1], nil
		}
	}
	return "", "", fmt.Errorf("the first stage has no RUN go build")
}

// buildLikeTheRecipe runs the recipe's build command here, from the module
// root, writing to out instead of the build stage's path.
func buildLikeTheRecipe(out string) error {
	stages, err := recipe()
	if err != nil {
		return err
	}
	cmd, path, err := goBuild(stages)
	if err != nil {
		return err
	}
	c := exec.Command("sh", "-c", strings.Replace(cmd, "-o "+path, "-o "+out, 1))
	c.Dir = ".."
	c.Env = append(os.Environ(), "VERSION="+stamp)
	if b, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("the recipe's build command %q: %v\n%s", cmd, err, b)
	}
	return nil
}

func TestContainerRecipe(t *testing.T) {
	stages, err := recipe()
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) < 2 {
		t.Fatalf("want a build stage and a runtime stage, got %d stage(s)", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !strings.Contains(build[0].args, "golang:") || !strings.HasSuffix(build[0].args, " AS build") {
		t.Errorf("build stage: FROM %s, want a golang image named build", build[0].args)
	}
	cmd, out, err := goBuild(stages)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0 ", " -trimpath ", "-X main.buildVersion=${VERSION}", " ./cmd/ticketd"} {
		if !strings.Contains(cmd+" ", want) {
			t.Errorf("build command %q lacks %q", cmd, want)
		}
	}
	if strings.Contains(final[0].args, "golang") {
		t.Errorf("runtime stage FROM %s: the toolchain has no place at run time", final[0].args)
	}

	users := find(final, "USER")
	if len(users) == 0 {
		t.Fatal("runtime stage: no USER, so it runs as root")
	}
	user := users[len(users)-1]
	if uid, _, _ := strings.Cut(user, ":"); uid == "0" || uid == "root" || uid == "" {
		t.Errorf("runtime stage runs as %q", user)
	}

	// The configuration the image starts with is where CMD looks, and it
	// keeps the data in the volume and listens on the exposed port.
	copies := map[string]string{} // destination -> source
	for _, c := range find(final, "COPY") {
		f := strings.Fields(c)
		copies[f[len(f)-1]] = strings.Join(f[:len(f)-1], " ")
	}
	if src := copies["/usr/local/bin/ticketd"]; src != "--from=build "+out {
		t.Errorf("the runtime stage's binary comes from %q, want the build's %s", src, out)
	}
	if ep := find(final, "ENTRYPOINT"); len(ep) != 1 || ep[0] != `["/usr/local/bin/ticketd"]` {
		t.Errorf("ENTRYPOINT %v", ep)
	}
	cmds := find(final, "CMD")
	m := regexp.MustCompile(`"-config", "([^"]+)"`).FindStringSubmatch(strings.Join(cmds, ""))
	if len(cmds) != 1 || !strings.HasPrefix(cmds[0], `["serve"`) || m == nil {
		t.Fatalf("CMD %v: want serve with -config", cmds)
	}
	cfgPath := m[1]
	if src := copies[cfgPath]; src != "deploy/container.yaml" {
		t.Fatalf("%s (CMD's -config) is copied from %q, want deploy/container.yaml", cfgPath, src)
	}
	var cfg struct {
		DataDir string `yaml:"dataDir"`
		HTTP    struct {
			Listen string `yaml:"listen"`
		} `yaml:"http"`
	}
	raw, err := os.ReadFile("container.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if v := find(final, "VOLUME"); len(v) != 1 || v[0] != `["`+cfg.DataDir+`"]` {
		t.Errorf("VOLUME %v, want the configuration's dataDir %s", v, cfg.DataDir)
	}
	if owner := copies[cfg.DataDir]; !strings.Contains(owner, "--chown="+user+" ") {
		t.Errorf("%s is copied with %q: the volume's mount point must belong to USER %s", cfg.DataDir, owner, user)
	}
	host, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil || (host != "0.0.0.0" && host != "" && host != "::") {
		t.Errorf("http.listen %q: in a container the API must listen on every interface", cfg.HTTP.Listen)
	}
	if e := find(final, "EXPOSE"); len(e) != 1 || e[0] != port {
		t.Errorf("EXPOSE %v, want http.listen's port %s", e, port)
	}

	// A developer's embedded store (the default dataDir, ./data) stays out
	// of the build context.
	ignore, err := os.ReadFile("Containerfile.dockerignore")
	if err != nil || !regexp.MustCompile(`(?m)^/?data/?$`).Match(ignore) {
		t.Errorf("Containerfile.dockerignore does not leave out ./data: %v", err)
	}

	// The daemon's own loader accepts the image's configuration.
	b, err := exec.Command(ticketd, "check-config", "container.yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(b), "ok") {
		t.Errorf("check-config container.yaml: %v\n%s", err, b)
	}
}

// The recipe's -ldflags stamp reaches `ticketd version`.
func TestBuildStampsVersion(t *testing.T) {
	b, err := exec.Command(ticketd, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(string(b))
	if !strings.HasPrefix(got, "ticketd "+stamp+" ") || !strings.HasSuffix(got, " "+runtime.Version()) {
		t.Errorf("version printed %q, want ticketd %s ... %s", got, stamp, runtime.Version())
	}
}

// unitWithBinary is deploy/ticketd.service with ExecStart pointing at bin,
// written to dir: systemd-analyze verify checks that the binary exists.
func unitWithBinary(t *testing.T, dir, bin string) (path string, directives map[string][]string) {
	t.Helper()
	raw, err := os.ReadFile("ticketd.service")
	if err != nil {
		t.Fatal(err)
	}
	const installed = "/usr/local/bin/ticketd"
	if !bytes.Contains(raw, []byte("ExecStart="+installed+" ")) {
		t.Fatalf("ExecStart does not start %s", installed)
	}
	raw = bytes.ReplaceAll(raw, []byte("ExecStart="+installed), []byte("ExecStart="+bin))
	path = filepath.Join(dir, "ticketd.service")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	directives = map[string][]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			directives[k] = append(directives[k], v)
		}
	}
	return path, directives
}

func systemdAnalyze(t *testing.T, args ...string) string {
	t.Helper()
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is not installed (apt-get install systemd; .ci/run does): %v", err)
	}
	c := exec.Command(tool, args...)
	c.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0")
	b, err := c.CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return string(b)
}

func TestSystemdUnit(t *testing.T) {
	dir := t.TempDir()
	unit, d := unitWithBinary(t, dir, ticketd)

	// verify exits 0 on unknown keys and bad values (it only warns), so
	// any output at all is a failure.
	if out := systemdAnalyze(t, "verify", "--man=no", unit); out != "" {
		t.Errorf("systemd-analyze verify found problems:\n%s", out)
	}
	// The check above can fail: a misspelt key is reported.
	typo := filepath.Join(dir, "typo", "ticketd.service")
	os.Mkdir(filepath.Dir(typo), 0o755)
	raw, _ := os.ReadFile(unit)
	os.WriteFile(typo, bytes.Replace(raw, []byte("NoNewPrivileges="), []byte("NoNewPrivilege="), 1), 0o644)
	if out := systemdAnalyze(t, "verify", "--man=no", typo); !strings.Contains(out, "NoNewPrivilege") {
		t.Errorf("verify did not report a misspelt key: %q", out)
	}

	for key, want := range map[string]string{
		"Type": "exec", "DynamicUser": "yes", "StateDirectory": "ticketd", "WorkingDirectory": "%S/ticketd",
		"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes",
		"CapabilityBoundingSet": "", "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "Restart": "on-failure",
		"EnvironmentFile": "-/etc/ticketd/ticketd.env", "UMask": "0077",
	} {
		if got := d[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %q", key, got, want)
		}
	}
	if got := strings.Join(d["SystemCallFilter"], " "); !strings.HasPrefix(got, "@system-service") {
		t.Errorf("SystemCallFilter=%s, want @system-service first", got)
	}
	if got := d["ExecStart"]; len(got) != 1 || !strings.HasSuffix(got[0], " serve -config /etc/ticketd/ticketd.yaml") {
		t.Errorf("ExecStart=%v", got)
	}

	// Stopping waits for the graceful shutdown: HTTP, then the workers,
	// each up to http.shutdownTimeout, then the store (10 s).
	var example struct {
		HTTP struct {
			ShutdownTimeout time.Duration `yaml:"shutdownTimeout"`
		} `yaml:"http"`
	}
	raw, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &example); err != nil || example.HTTP.ShutdownTimeout == 0 {
		t.Fatalf("config.example.yaml http.shutdownTimeout: %v", err)
	}
	stop, err := time.ParseDuration(strings.Join(d["TimeoutStopSec"], ""))
	if need := 2*example.HTTP.ShutdownTimeout + 10*time.Second; err != nil || stop < need {
		t.Errorf("TimeoutStopSec=%v (%v): want at least %v", d["TimeoutStopSec"], err, need)
	}

	// systemd's own score of the sandbox: 0 is locked down, 10 is exposed;
	// "OK" is below 2 (the hardening above gives 1.5).
	out := systemdAnalyze(t, "security", "--offline=yes", "--no-pager", unit)
	m := regexp.MustCompile(`Overall exposure level for ticketd.service: ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if score, _ := strconv.ParseFloat(m[1], 64); score >= 2 {
		t.Errorf("exposure level %v, want below 2 (OK):\n%s", score, out)
	}
}

// MemoryDenyWriteExecute=yes kills a process that maps memory writable
// and executable. Go code never does at run time (no JIT), and the binary
// must not ask for it either.
func TestBinaryHasNoWritableExecutableSegment(t *testing.T) {
	f, err := elf.Open(ticketd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	loads := 0
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			loads++
			if p.Flags&elf.PF_W != 0 && p.Flags&elf.PF_X != 0 {
				t.Errorf("segment at %#x is writable and executable", p.Vaddr)
			}
		}
		if p.Type == elf.PT_GNU_STACK && p.Flags&elf.PF_X != 0 {
			t.Error("the binary asks for an executable stack")
		}
	}
	if loads == 0 {
		t.Error("no loadable segment: not an executable")
	}
}
