package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/ticketd/ticketd/store"
)

// envelope is the seed's answer shape: {"success", "message", "data"}.
type envelope struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
	// Total is an extension on list answers: how many items match the query
	// across all pages.
	Total *int64 `json:"total,omitempty"`
}

// writeJSON answers with body. It is rendered whole before anything is
// sent: a rendering error is a 500, not a 200 cut short, and a page of
// tickets goes out with its length in one write rather than in 4 KB
// chunks.
func writeJSON(w http.ResponseWriter, code int, body envelope) {
	b, err := json.Marshal(body)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"success":false,"message":"Internal server error"}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func ok(w http.ResponseWriter, code int, message string, data any) {
	writeJSON(w, code, envelope{Success: true, Message: message, Data: data})
}

// apiError is an error with the status code and message the caller sees.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(msg string) error { return &apiError{http.StatusBadRequest, msg} }

var (
	errUnauthorized = &apiError{http.StatusUnauthorized, "Unauthorized"}
	errForbidden    = &apiError{http.StatusForbidden, "Forbidden"}
	errNotFound     = &apiError{http.StatusNotFound, "Ticket not found"}
	errTooLarge     = &apiError{http.StatusRequestEntityTooLarge, "Request body too large"}
	errMediaType    = &apiError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
)

// retryAfterSeconds is the Retry-After of a 503: the store is down or
// refuses writes (disk full), which takes an operator, or a failover,
// seconds to minutes.
const retryAfterSeconds = "30"

// fail answers an error in the seed envelope. This is the one place that
// maps errors to status codes; 5xx answers log the detail and say nothing
// of it.
func fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &mbe):
		ae = errTooLarge
	case errors.Is(err, store.ErrNotFound):
		ae = errNotFound
	case errors.Is(err, store.ErrConflict):
		ae = &apiError{http.StatusConflict, "Ticket was changed by someone else; fetch it again"}
	case errors.Is(err, store.ErrInvalid):
		ae = &apiError{http.StatusBadRequest, "Invalid request data"}
	case errors.Is(err, store.ErrUnavailable):
		log.Error("store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &apiError{http.StatusServiceUnavailable, "Service unavailable, try again later"}
		w.Header().Set("Retry-After", retryAfterSeconds)
	default:
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &apiError{http.StatusInternalServerError, "Internal server error"}
	}
	writeJSON(w, ae.code, envelope{Success: false, Message: ae.msg})
}
