package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// openAPISchemas checks JSON documents against the schemas of
// api/openapi.json. It knows the part of JSON Schema the document uses
// (type, required, properties, additionalProperties: false, enum, const,
// pattern, items, allOf, local $ref, format date-time): enough to hold the
// webhooks ticketd sends to what it documents, without a validator
// library for one test.
type openAPISchemas struct {
	doc map[string]any
}

func loadOpenAPI(t testing.TB) openAPISchemas {
	t.Helper()
	raw, err := os.ReadFile("../../api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return openAPISchemas{doc: doc}
}

// checkWebhook checks a webhook body against the schema of its type's
// operation in the webhooks section; nil when it conforms.
func (s openAPISchemas) checkWebhook(body []byte) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	typ, _ := digJSON(v, "type").(string)
	schema := digJSON(s.doc, "webhooks", typ, "post", "requestBody", "content", "application/json", "schema")
	if schema == nil {
		return fmt.Errorf("type %q is not in the webhooks section", typ)
	}
	var errs []string
	s.check(schema, v, "$", &errs)
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (s openAPISchemas) check(schema, v any, at string, errs *[]string) {
	sc, _ := schema.(map[string]any)
	bad := func(format string, args ...any) { *errs = append(*errs, at+": "+fmt.Sprintf(format, args...)) }
	if ref, ok := sc["$ref"].(string); ok {
		target := digJSON(s.doc, strings.Split(strings.TrimPrefix(ref, "#/"), "/")...)
		if target == nil {
			bad("unresolved $ref %s", ref)
			return
		}
		s.check(target, v, at, errs)
	}
	for _, sub := range asList(sc["allOf"]) {
		s.check(sub, v, at, errs)
	}
	if t, ok := sc["type"]; ok {
		types := asList(t) // ["string", "null"], or one name
		if name, ok := t.(string); ok {
			types = []any{name}
		}
		if !slices.ContainsFunc(types, func(t any) bool { return jsonType(v, t.(string)) }) {
			bad("%v is not of type %v", v, t)
			return
		}
	}
	if c, ok := sc["const"]; ok && !reflect.DeepEqual(c, v) {
		bad("%v is not %v", v, c)
	}
	if enum := asList(sc["enum"]); enum != nil && !slices.ContainsFunc(enum, func(e any) bool { return reflect.DeepEqual(e, v) }) {
		bad("%v is not one of %v", v, enum)
	}
	if str, ok := v.(string); ok {
		if p, ok := sc["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(str) {
			bad("%q does not match %s", str, p)
		}
		if sc["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				bad("%q is not a date-time", str)
			}
		}
	}
	if obj, ok := v.(map[string]any); ok {
		props, _ := sc["properties"].(map[string]any)
		for _, r := range asList(sc["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				bad("required %s is missing", r)
			}
		}
		for k, x := range obj {
			if p, ok := props[k]; ok {
				s.check(p, x, at+"."+k, errs)
			} else if sc["additionalProperties"] == false {
				bad("%s is not documented", k)
			}
		}
	}
	if arr, ok := v.([]any); ok && sc["items"] != nil {
		for i, x := range arr {
			s.check(sc["items"], x, fmt.Sprintf("%s[%d]", at, i), errs)
		}
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// jsonType reports whether v (as encoding/json decodes into any) is of
// JSON Schema type t.
func jsonType(v any, t string) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	}
	return false
}

// digJSON follows keys through nested objects; nil when one is missing.
func digJSON(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// The checker must be able to fail: each broken document is refused.
func TestSchemaCheckerRefusesBrokenWebhooks(t *testing.T) {
	s := loadOpenAPI(t)
	good := `{"type":"status.changed","timestamp":"2026-12-01T10:00:00.000Z","data":{"eventId":"0123456789abcdef01234567",
		"ticketId":"0123456789abcdef01234567","refId":7,"actor":{"type":"admin","id":"0123456789abcdef01234567"},"origin":"api",
		"from":"open","to":"resolved","ticket":{"_id":"0123456789abcdef01234567","creatorId":"0123456789abcdef01234567",
		"creatorType":"customer","category":"Support","subject":"s","description":"d","priority":"low","status":"resolved",
		"createdAt":"2026-12-01T09:00:00.000Z","updatedAt":"2026-12-01T10:00:00.000Z","__v":3,"refId":7,"teamId":"acme","responseCount":0}}}`
	if err := s.checkWebhook([]byte(good)); err != nil {
		t.Fatalf("a conforming document: %v", err)
	}
	for name, change := range map[string][2]string{
		"unknown type":           {`"type":"status.changed"`, `"type":"ticket.exploded"`},
		"missing from":           {`"from":"open",`, ``},
		"bad status":             {`"status":"resolved"`, `"status":"done"`},
		"id not hex":             {`"ticketId":"0123456789abcdef01234567"`, `"ticketId":"42"`},
		"refId a string":         {`"refId":7,"actor"`, `"refId":"7","actor"`},
		"not a date-time":        {`"timestamp":"2026-12-01T10:00:00.000Z"`, `"timestamp":"yesterday"`},
		"undocumented field":     {`"teamId":"acme"`, `"teamId":"acme","secret":1`},
		"missing ticket field":   {`"teamId":"acme",`, ``},
		"actor of unknown type":  {`"type":"admin"`, `"type":"robot"`},
		"from neither str/null":  {`"from":"open"`, `"from":3`},
		"missing required data":  {`"eventId":"0123456789abcdef01234567",`, ``},
		"__v not an integer":     {`"__v":3`, `"__v":3.5`},
		"origin of unknown kind": {`"origin":"api"`, `"origin":"fax"`},
	} {
		broken := strings.Replace(good, change[0], change[1], 1)
		if broken == good {
			t.Fatalf("%s: the change %q does not apply", name, change[0])
		}
		if err := s.checkWebhook([]byte(broken)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
