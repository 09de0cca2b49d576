package main

import (
	"context"
	"os"
	"testing"
)

// serveInProcess runs serve with cfg in this process, as the benchmarks
// measure it, and returns its base URL once it listens, and a stop that
// ends it and reports an error it returned. hooks may be nil; its
// listening hook is the helper's own.
func serveInProcess(tb testing.TB, ctx context.Context, cfg Config, hooks *serveHooks) (base string, stop func()) {
	tb.Helper()
	if hooks == nil {
		hooks = &serveHooks{}
	}
	addr := make(chan string, 1)
	hooks.listening = func(a string) { addr <- a }
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- serve(sctx, cfg, cfg.logger(os.Stderr), hooks) }()
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		cancel()
		tb.Fatalf("serve exited: %v", err)
	}
	return base, func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	}
}
