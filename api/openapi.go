package api

import (
	_ "embed"
	"net/http"
)

// openAPIDocument describes every route; TestOpenAPIMatchesRoutes keeps it
// and the route table in step.
//
//go:embed openapi.json
var openAPIDocument []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, err := w.Write(openAPIDocument)
	return err
}
