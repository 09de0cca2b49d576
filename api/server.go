// Package api serves the /api/ticket REST routes of seed 004 with JWT auth,
// plus health, readiness, metrics and the OpenAPI document. It knows HTTP;
// the store knows tickets.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ticketd/ticketd/store"
)

// Options configures the API. The zero value of each field means the
// documented default.
type Options struct {
	// JWTSecret signs and checks tokens (HS256). Required.
	JWTSecret []byte
	// Categories a ticket may be filed under; the first is the default.
	// Empty means DefaultCategories.
	Categories []string
	// MaxBodyBytes caps a request body; 0 means the largest valid request
	// (see maxRequestBytes): 246,496 bytes with the default limits.
	MaxBodyBytes int64
	// RequestTimeout bounds the work for one request; 0 means 15 s.
	RequestTimeout time.Duration
	// Registry receives the HTTP metrics and is served on /metrics; nil
	// means a fresh registry.
	Registry *prometheus.Registry
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
	// Components, if set, reports the optional parts of the daemon (the
	// Slack bridge) that can be degraded without making it unready:
	// /readyz stays 200 when the store is ready, and its body names each
	// degraded component with the reason.
	Components func() []ComponentStatus
	// Jobs, if set, lists the scheduled jobs for GET
	// /api/ticket/admin-jobs; nil lists none.
	Jobs func(ctx context.Context) ([]JobStatus, error)
}

// ComponentStatus is one optional component's state for /readyz.
type ComponentStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"` // e.g. connected, connecting, degraded
	Degraded bool   `json:"degraded"`
	Reason   string `json:"reason,omitempty"` // what is wrong and what to fix
}

// DefaultCategories are used when none are configured.
var DefaultCategories = []string{"Support", "Billing", "Technical", "Account", "Other"}

func (o *Options) defaults() {
	if len(o.Categories) == 0 {
		o.Categories = DefaultCategories
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 15 * time.Second
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// The worst case of a request body, for the default body limit.
const (
	// maxEscapedRuneBytes: one character outside the Basic Multilingual
	// Plane written as two \uXXXX escapes, as some JSON encoders do (raw
	// UTF-8 takes at most 4).
	maxEscapedRuneBytes = 12
	// maxRequestOverhead: keys, quotes, priority, booleans and whitespace.
	maxRequestOverhead = 4 << 10
)

// maxRequestBytes is the size of the largest valid request, a create with
// the longest subject, description and category, every character escaped:
// a body limit below it would answer 413 to a valid request (20,000 emoji
// are 80,000 bytes of UTF-8, 240,000 escaped).
func maxRequestBytes(categories []string, l store.Limits) int64 {
	longest := 0
	for _, c := range categories {
		longest = max(longest, utf8.RuneCountInString(c))
	}
	return int64(l.MaxSubject+l.MaxDescription+longest)*maxEscapedRuneBytes + maxRequestOverhead
}

// Server is the HTTP API.
type Server struct {
	opts    Options
	store   Store
	log     *slog.Logger
	auth    *authenticator
	mux     *http.ServeMux
	routes  []route
	metrics *httpMetrics
}

// access says who may call a route.
type access int

const (
	public access = iota
	customerOnly
	adminOnly
	anyRole
)

// route is one entry of the route table. The table is the single source of
// truth for the mux and for the test that checks the OpenAPI document.
type route struct {
	method, path string
	access       access
	handle       func(w http.ResponseWriter, r *http.Request) error
}

// New builds the API over a store.
func New(st Store, opts Options, log *slog.Logger) (*Server, error) {
	if len(opts.JWTSecret) < 16 {
		return nil, fmt.Errorf("api: JWT secret must be at least 16 bytes, got %d", len(opts.JWTSecret))
	}
	opts.defaults()
	if opts.MaxBodyBytes <= 0 {
		limits := store.Limits{MaxSubject: store.DefaultMaxSubject, MaxDescription: store.DefaultMaxDescription}
		if st != nil { // the route table alone is built without a store
			limits = st.Limits()
		}
		opts.MaxBodyBytes = maxRequestBytes(opts.Categories, limits)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		opts:  opts,
		store: st,
		log:   log.With("component", "api"),
		auth:  newAuthenticator(opts.JWTSecret, opts.Now),
		mux:   http.NewServeMux(),
	}
	s.metrics = newHTTPMetrics(opts.Registry)
	s.routes = s.routeTable()
	byPath := map[string][]route{}
	var order []string
	for _, rt := range s.routes {
		if _, seen := byPath[rt.path]; !seen {
			order = append(order, rt.path)
		}
		byPath[rt.path] = append(byPath[rt.path], rt)
	}
	for _, p := range order {
		s.mux.Handle(p, s.dispatch(p, byPath[p]))
	}
	s.mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, envelope{Message: "Route not found"})
	}))
	return s, nil
}

func (s *Server) routeTable() []route {
	const p = "/api/ticket"
	return []route{
		{"GET", "/healthz", public, s.healthz},
		{"GET", "/readyz", public, s.readyz},
		{"GET", "/api/openapi.json", public, serveOpenAPI},

		{"POST", p + "/create", customerOnly, s.create},
		{"GET", p + "/fetch", customerOnly, s.fetch},
		{"GET", p + "/fetch-one", customerOnly, s.fetchOne},
		{"POST", p + "/create-reply", customerOnly, s.reply},
		{"GET", p + "/categories", anyRole, s.categories},
		{"GET", p + "/attachment", anyRole, s.attachment},

		{"GET", p + "/admin-fetch", adminOnly, s.fetch},
		{"GET", p + "/admin-fetch-one", adminOnly, s.fetchOne},
		{"POST", p + "/admin-create-reply", adminOnly, s.reply},
		{"PATCH", p + "/admin-update", adminOnly, s.update},
		{"DELETE", p + "/admin-delete", adminOnly, s.delete},
		{"GET", p + "/admin-logs", adminOnly, s.logs},
		{"GET", p + "/admin-deliveries", adminOnly, s.deliveries},
		{"POST", p + "/admin-requeue", adminOnly, s.requeue},
		{"GET", p + "/admin-quarantine", adminOnly, s.quarantine},
		{"GET", p + "/admin-quarantine-raw", adminOnly, s.quarantineRaw},
		{"GET", p + "/admin-ignored", adminOnly, s.ignored},
		{"GET", p + "/admin-jobs", adminOnly, s.jobs},
	}
}

// Handler returns the whole API, /metrics included.
func (s *Server) Handler() http.Handler {
	outer := http.NewServeMux()
	outer.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	outer.Handle("/", s.mux)
	return outer
}

// dispatch picks the route for the request's method (405 in the envelope
// otherwise) and runs it through auth, limits, metrics and panic recovery.
func (s *Server) dispatch(path string, routes []route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rt *route
		for i := range routes {
			if routes[i].method == r.Method || (r.Method == http.MethodHead && routes[i].method == http.MethodGet) {
				rt = &routes[i]
			}
		}
		if rt == nil {
			allow := ""
			for i, x := range routes {
				if i > 0 {
					allow += ", "
				}
				allow += x.method
			}
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, envelope{Message: "Method not allowed"})
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("handler panic", "path", path, "panic", v, "stack", string(debug.Stack()))
				if !rec.wrote {
					writeJSON(rec, http.StatusInternalServerError, envelope{Message: "Internal server error"})
				}
			}
			s.metrics.observe(rt.method, path, rec.code, time.Since(start))
		}()
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		r, err := s.authorize(r, rt.access)
		if err != nil {
			fail(rec, r, s.log, err)
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(rec, r.Body, s.opts.MaxBodyBytes)
		}
		if err := rt.handle(rec, r); err != nil {
			fail(rec, r, s.log, err)
		}
	})
}

// authorize checks the caller against the route's access and returns the
// request carrying the caller's Principal.
func (s *Server) authorize(r *http.Request, a access) (*http.Request, error) {
	if a == public {
		return r, nil
	}
	p, err := s.auth.principal(r)
	if err != nil {
		return r, err
	}
	if (a == customerOnly && p.Role != RoleCustomer) || (a == adminOnly && p.Role != RoleAdmin) {
		return r, errForbidden
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), nil
}

type statusRecorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code, s.wrote = code, true
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ticketd_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ticketd_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

func (m *httpMetrics) observe(method, route string, code int, d time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(method, route).Observe(d.Seconds())
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	ok(w, http.StatusOK, "ok", nil)
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := s.store.Ready(r.Context()); err != nil {
		return err
	}
	if s.opts.Components == nil {
		ok(w, http.StatusOK, "ready", nil)
		return nil
	}
	comps := s.opts.Components()
	msg := "ready"
	var degraded []string
	for _, c := range comps {
		if c.Degraded {
			degraded = append(degraded, c.Name+": "+c.Reason)
		}
	}
	if len(degraded) > 0 {
		msg = "ready, degraded: " + strings.Join(degraded, "; ")
	}
	ok(w, http.StatusOK, msg, map[string]any{"components": comps})
	return nil
}
