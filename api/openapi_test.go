package api

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/ticketd/ticketd/store"
)

// TestOpenAPIMatchesRoutes fails when a route exists in the server but not
// in the document, or the other way round.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi version %q, want 3.1.x", doc.OpenAPI)
	}
	s, err := New(nil, Options{JWTSecret: []byte("0123456789abcdef")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{"GET /metrics": true} // mounted beside the route table
	for _, rt := range s.routes {
		served[rt.method+" "+rt.path] = true
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	documented["GET /metrics"] = true // Prometheus text, described in info.description
	var missing, extra []string
	for r := range served {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for r := range documented {
		if !served[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("served but not documented: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("documented but not served: %v", extra)
	}
}

// TestOpenAPIDocumentsWebhooks: every event kind a webhook carries has its
// operation in the document's webhooks section, with the three signature
// headers and a body schema, and every $ref of the document resolves (the
// payloads are built from the shared schemas). cmd/ticketd checks the
// documents actually sent against these schemas.
func TestOpenAPIDocumentsWebhooks(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	hooks, _ := doc["webhooks"].(map[string]any)
	kinds := []store.EventKind{store.EventTicketCreated, store.EventResponseAdded, store.EventStatusChanged,
		store.EventPriorityChanged, store.EventAssigneeChanged}
	if len(hooks) != len(kinds) {
		t.Errorf("webhooks section has %d entries, want %d", len(hooks), len(kinds))
	}
	for _, k := range kinds {
		post, _ := dig(hooks, string(k), "post").(map[string]any)
		if post == nil {
			t.Errorf("webhook %s: no post operation", k)
			continue
		}
		var headers []string
		params, _ := post["parameters"].([]any)
		for _, p := range params {
			if p, _ := p.(map[string]any); p["in"] == "header" && p["required"] == true {
				headers = append(headers, p["name"].(string))
			}
		}
		sort.Strings(headers)
		if strings.Join(headers, " ") != "webhook-id webhook-signature webhook-timestamp" {
			t.Errorf("webhook %s: required headers %v", k, headers)
		}
		schema, _ := dig(post, "requestBody", "content", "application/json", "schema").(map[string]any)
		if !strings.Contains(fmt.Sprint(schema), "#/components/schemas/WebhookEvent") || !strings.Contains(fmt.Sprint(schema), "const:"+string(k)) {
			t.Errorf("webhook %s: body schema %v", k, schema)
		}
	}
	var refs []string
	collectRefs(doc, &refs)
	if len(refs) == 0 {
		t.Fatal("no $ref found")
	}
	for _, ref := range refs {
		path, ok := strings.CutPrefix(ref, "#/")
		if !ok || dig(doc, strings.Split(path, "/")...) == nil {
			t.Errorf("$ref %s does not resolve", ref)
		}
	}
}

// dig follows keys through nested objects; nil when one is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func collectRefs(v any, refs *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" {
				*refs = append(*refs, s)
			}
			collectRefs(x, refs)
		}
	case []any:
		for _, x := range v {
			collectRefs(x, refs)
		}
	}
}
