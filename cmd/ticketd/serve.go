package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ticketd/ticketd/api"
	emailin "github.com/ticketd/ticketd/ingest/email"
	"github.com/ticketd/ticketd/store"
)

// Proven here, where every package is known: the store is what the API needs.
var _ api.Store = (*store.Store)(nil)

// serveHooks lets tests learn the listening address, and benchmarks the
// store the daemon opened.
type serveHooks struct {
	listening func(addr string)
	store     func(st *store.Store)
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string, hooks *serveHooks) error {
	fs := newFlags("serve", "serve [-config FILE]", stderr)
	cfgPath := fs.String("config", "", "configuration file (default: none, built-in defaults; see config.example.yaml)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	log := cfg.logger(stderr)
	return serve(ctx, cfg, log, hooks)
}

// serve runs the daemon until ctx ends, then shuts down in order: stop
// accepting (HTTP, ingest), let in-flight work finish, stop the workers,
// close the store last.
func serve(ctx context.Context, cfg Config, log *slog.Logger, hooks *serveHooks) error {
	st, err := store.Open(ctx, store.OpenOptions{
		URI: cfg.Store.URI, Database: cfg.Store.Database, DataDir: cfg.DataDir, Logger: log,
		Limits: store.Limits{MaxSubject: cfg.Tickets.MaxSubject, MaxDescription: cfg.Tickets.MaxDescription},
	})
	if err != nil {
		return err
	}
	if hooks != nil && hooks.store != nil {
		hooks.store(st)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := st.Close(cctx); err != nil {
			log.Error("close store", "err", err)
		}
		log.Info("stopped")
	}()
	mode := "embedded store in " + cfg.DataDir
	if cfg.Store.URI != "" {
		mode = "MongoDB"
	}

	secret, err := jwtSecret(cfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(newQueueCollector(st))
	slackDesk := newSlackDesk(cfg, st, log)
	apiOpts := api.Options{
		JWTSecret: secret, Categories: cfg.Tickets.Categories, MaxBodyBytes: cfg.HTTP.MaxBodyBytes,
		RequestTimeout: cfg.HTTP.RequestTimeout, Registry: reg,
	}
	// The mail source starts after the API is made: /readyz finds it here.
	var reader atomic.Pointer[emailin.Source]
	if slackDesk != nil || (cfg.Email.Enabled && len(cfg.Email.Inbound.Accounts) > 0) {
		apiOpts.Components = func() []api.ComponentStatus {
			var c []api.ComponentStatus
			if slackDesk != nil {
				c = append(c, slackDesk.components()...)
			}
			if src := reader.Load(); src != nil {
				c = append(c, mailboxComponents(src)...)
			}
			return c
		}
	}
	sj, err := buildSLAJobs(cfg.Jobs.SLAJobsConfig, cfg.Slack.Channel, st, slackDesk.slackPoster(), time.Now, log)
	if err != nil {
		return err
	}
	sj.register(reg)
	sched, err := newScheduler(cfg, st, log, reg, daemonJobs(cfg, st, log, sj))
	if err != nil {
		return err
	}
	apiOpts.Jobs = jobStatuses(sched, st, time.Now)
	apiSrv, err := api.New(st, apiOpts, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (http.listen): %w", cfg.HTTP.Listen, err)
	}
	httpSrv := &http.Server{
		Handler:           slackDesk.mount(apiSrv.Handler()),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       cfg.HTTP.RequestTimeout + 5*time.Second,
		WriteTimeout:      cfg.HTTP.RequestTimeout + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	// Workers run until workCtx ends; it ends after HTTP has stopped
	// accepting, so requests in flight still find the relay running.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var workers sync.WaitGroup
	// The relay queues for the deployment's sinks, from the configuration
	// (identical on every daemon), whatever workers run here.
	sinks := cfg.sinks()
	joined, err := st.JoinDeployment(ctx, sinks)
	if err != nil {
		return fmt.Errorf("join the deployment: %w", err)
	}
	if joined.Changed {
		log.Warn("the deployment's notification sinks changed; this daemon's configuration is now the deployment's", "from", joined.Previous, "to", sinks)
	}
	source, err := startEmail(workCtx, &workers, cfg.Email, st, secret, log, reg)
	if err != nil {
		return err
	}
	reader.Store(source)
	slackDesk.start(workCtx, &workers, reg)
	if err := startWebhooks(workCtx, &workers, cfg.Webhooks, st, log, reg); err != nil {
		return err
	}
	runWorker(workCtx, &workers, log, "outbox-relay", func(ctx context.Context) error {
		// Deferred work: on the embedded store, its writes yield to those
		// of incoming messages and API requests (store.Deferrable).
		return st.RunRelay(store.Deferrable(ctx), cfg.relaySweep())
	})
	sched.Start()

	httpDone := make(chan error, 1)
	go func() { httpDone <- httpSrv.Serve(ln) }()
	log.Info("ticketd started", "version", version(), "listen", ln.Addr().String(), "store", mode)
	if hooks != nil && hooks.listening != nil {
		hooks.listening(ln.Addr().String())
	}

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: finishing in-flight work")
	case err := <-httpDone:
		serveErr = fmt.Errorf("http server: %w", err)
	}
	// Each phase gets the whole shutdownTimeout: the workers' in-flight
	// sends and messages must not lose time to slow HTTP requests, or the
	// store would close under them.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.HTTP.ShutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(hctx); err != nil {
		log.Error("http shutdown incomplete", "err", err)
	}
	stopJobs(ctx, sched, cfg.HTTP.ShutdownTimeout, log)
	stopWork()
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.HTTP.ShutdownTimeout):
		log.Error("workers did not stop in time; closing the store under them", "timeout", cfg.HTTP.ShutdownTimeout)
	}
	return serveErr
}

// runWorker runs fn in a goroutine owned by wg until ctx ends. A panic or
// an error is logged and fn restarted after a pause, so one failing bridge
// never takes the daemon down.
func runWorker(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger, name string, fn func(context.Context) error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		pause := time.Second
		for ctx.Err() == nil {
			err := func() (err error) {
				defer func() {
					if v := recover(); v != nil {
						err = fmt.Errorf("panic: %v\n%s", v, debug.Stack())
					}
				}()
				return fn(ctx)
			}()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("returned early")
			}
			log.Error("worker failed; restarting", "worker", name, "err", err, "in", pause)
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, time.Minute)
		}
	}()
}
