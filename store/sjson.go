package store

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The embedded server (FerretDB 1.24, the last v1 release, so the format is
// frozen) stores each document in SQLite as "SJSON": plain JSON values plus
// a schema under "$s" that says each field's BSON type and the key order.
// Listings read their page straight from SQLite (see listindex.go) and turn
// it into BSON here, skipping the server's wire round trip and its decoder,
// which were most of a listing's cost. The layout is described in FerretDB's
// internal/handler/sjson package, which cannot be imported.

// sjsonSchema is the schema of one document or embedded object.
type sjsonSchema struct {
	Props map[string]json.RawMessage `json:"p"` // field name -> sjsonElem, parsed on use
	Keys  []string                   `json:"$k"`
}

// sjsonElem is the type of one value.
type sjsonElem struct {
	Type    string       `json:"t"`
	Schema  *sjsonSchema `json:"$s"`
	Options string       `json:"o"` // regex options
	Items   []sjsonElem  `json:"i"` // array items, one each
	Subtype byte         `json:"s"` // binData subtype
}

// sjsonToBSON converts one stored document to BSON, without the top-level
// fields named in skip (the ever-growing audit log is never parsed).
func sjsonToBSON(doc []byte, skip ...string) (bson.Raw, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return nil, fmt.Errorf("stored document: %w", err)
	}
	var sch sjsonSchema
	if err := json.Unmarshal(top["$s"], &sch); err != nil {
		return nil, fmt.Errorf("stored document schema: %w", err)
	}
	out, err := appendSJSONDoc(make([]byte, 0, len(doc)), &sch, top, skip)
	if err != nil {
		return nil, fmt.Errorf("stored document: %w", err)
	}
	return bson.Raw(out), nil
}

func appendSJSONDoc(dst []byte, sch *sjsonSchema, fields map[string]json.RawMessage, skip []string) ([]byte, error) {
	idx, dst := bsoncore.AppendDocumentStart(dst)
	for _, k := range sch.Keys {
		if slices.Contains(skip, k) {
			continue
		}
		var el sjsonElem
		if err := json.Unmarshal(sch.Props[k], &el); err != nil {
			return nil, fmt.Errorf("schema of %q: %w", k, err)
		}
		var err error
		if dst, err = appendSJSONValue(dst, k, &el, fields[k]); err != nil {
			return nil, err
		}
	}
	return bsoncore.AppendDocumentEnd(dst, idx)
}

func appendSJSONValue(dst []byte, key string, el *sjsonElem, raw json.RawMessage) ([]byte, error) {
	bad := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("field %q (%s): %w", key, el.Type, err)
	}
	switch el.Type {
	case "object":
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil || el.Schema == nil {
			return bad(fmt.Errorf("not an object with a schema: %v", err))
		}
		dst = bsoncore.AppendHeader(dst, bsoncore.TypeEmbeddedDocument, key)
		return appendSJSONDoc(dst, el.Schema, fields, nil)
	case "array":
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil || len(items) != len(el.Items) {
			return bad(fmt.Errorf("array of %d values for %d types: %v", len(items), len(el.Items), err))
		}
		dst = bsoncore.AppendHeader(dst, bsoncore.TypeArray, key)
		idx, dst := bsoncore.AppendArrayStart(dst)
		for i := range items {
			var err error
			if dst, err = appendSJSONValue(dst, strconv.Itoa(i), &el.Items[i], items[i]); err != nil {
				return nil, err
			}
		}
		return bsoncore.AppendArrayEnd(dst, idx)
	case "string":
		s, err := sjsonString(raw)
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendStringElement(dst, key, s), nil
	case "objectId":
		s, err := sjsonString(raw)
		if err != nil {
			return bad(err)
		}
		var id bson.ObjectID
		if n, err := hex.Decode(id[:], []byte(s)); err != nil || n != len(id) {
			return bad(fmt.Errorf("object id %q", s))
		}
		return bsoncore.AppendObjectIDElement(dst, key, id), nil
	case "date":
		ms, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendDateTimeElement(dst, key, ms), nil
	case "long":
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendInt64Element(dst, key, n), nil
	case "int":
		n, err := strconv.ParseInt(string(raw), 10, 32)
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendInt32Element(dst, key, int32(n)), nil
	case "double":
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendDoubleElement(dst, key, f), nil
	case "bool":
		switch string(raw) {
		case "true", "false":
			return bsoncore.AppendBooleanElement(dst, key, string(raw) == "true"), nil
		}
		return bad(fmt.Errorf("boolean %s", raw))
	case "null":
		return bsoncore.AppendNullElement(dst, key), nil
	case "binData":
		s, err := sjsonString(raw)
		if err != nil {
			return bad(err)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendBinaryElement(dst, key, el.Subtype, b), nil
	case "timestamp":
		n, err := strconv.ParseUint(string(raw), 10, 64)
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendTimestampElement(dst, key, uint32(n>>32), uint32(n)), nil
	case "regex":
		s, err := sjsonString(raw)
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendRegexElement(dst, key, s, el.Options), nil
	}
	return bad(fmt.Errorf("unknown type"))
}

// sjsonString reads a JSON string, without a decoder when it has no escapes.
func sjsonString(raw json.RawMessage) (string, error) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}
