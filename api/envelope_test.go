package api

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// An answer goes out whole with its length, and one that cannot be
// rendered is a 500, not a 200 cut short.
func TestAnswersAreRenderedBeforeTheyAreSent(t *testing.T) {
	rec := httptest.NewRecorder()
	writeJSON(rec, http.StatusOK, envelope{Success: true, Message: "ok", Data: []string{"a", "b"}})
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Length") != strconv.Itoa(rec.Body.Len()) ||
		rec.Body.String() != `{"success":true,"message":"ok","data":["a","b"]}`+"\n" {
		t.Errorf("answer: %d, length %q, %q", rec.Code, rec.Header().Get("Content-Length"), rec.Body.String())
	}
	rec = httptest.NewRecorder()
	writeJSON(rec, http.StatusOK, envelope{Success: true, Data: math.NaN()})
	if rec.Code != http.StatusInternalServerError || rec.Body.String() != `{"success":false,"message":"Internal server error"}`+"\n" {
		t.Errorf("unrenderable answer: %d, %q", rec.Code, rec.Body.String())
	}
}
