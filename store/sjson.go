package store

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"

	"github.com/valyala/fastjson"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The embedded server (FerretDB 1.24, the last v1 release, so the format is
// frozen) stores each document in SQLite as "SJSON": plain JSON values plus
// a schema under "$s" that gives each field's BSON type and the key order:
//
//	{"$s": {"p": {"_id": {"t": "objectId"}, "at": {"t": "date"}, "r": {"t": "array", "i": [{"t": "object", "$s": {...}}]}},
//	        "$k": ["_id", "at", "r"]},
//	 "_id": "6b0f04a62addcf4aec0a0669", "at": 1796146342372, "r": [{...}]}
//
// Listings read their page straight from SQLite (listindex.go) and turn it
// into BSON here, skipping the server's wire round trip and its decoder,
// which were most of a listing's cost. The format is described in FerretDB's
// internal/handler/sjson package, which cannot be imported. fastjson parses
// about five times faster than encoding/json, which was most of what was
// left.

// sjsonToBSON converts one stored document to BSON, without the top-level
// fields named in skip (the ever-growing audit log is never converted).
func sjsonToBSON(p *fastjson.Parser, doc []byte, skip ...string) (bson.Raw, error) {
	v, err := p.ParseBytes(doc)
	if err != nil {
		return nil, fmt.Errorf("stored document: %w", err)
	}
	obj, err := v.Object()
	if err != nil {
		return nil, fmt.Errorf("stored document: %w", err)
	}
	out, err := appendSJSONDoc(make([]byte, 0, len(doc)/2), obj.Get("$s"), obj, skip)
	if err != nil {
		return nil, fmt.Errorf("stored document: %w", err)
	}
	return bson.Raw(out), nil
}

// appendSJSONDoc appends the document fields, typed by schema sch.
func appendSJSONDoc(dst []byte, sch *fastjson.Value, fields *fastjson.Object, skip []string) ([]byte, error) {
	if sch == nil {
		return nil, fmt.Errorf("object without a schema")
	}
	props := sch.GetObject("p")
	if props == nil {
		return nil, fmt.Errorf("schema without properties")
	}
	idx, dst := bsoncore.AppendDocumentStart(dst)
	for _, k := range sch.GetArray("$k") {
		key := string(k.GetStringBytes())
		if slices.Contains(skip, key) {
			continue
		}
		var err error
		if dst, err = appendSJSONValue(dst, key, props.Get(key), fields.Get(key)); err != nil {
			return nil, err
		}
	}
	return bsoncore.AppendDocumentEnd(dst, idx)
}

// appendSJSONValue appends one element: key, typed by el, of value v.
func appendSJSONValue(dst []byte, key string, el, v *fastjson.Value) ([]byte, error) {
	if el == nil || v == nil {
		return nil, fmt.Errorf("field %q: no value or no type", key)
	}
	typ := string(el.GetStringBytes("t"))
	bad := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("field %q (%s): %w", key, typ, err)
	}
	switch typ {
	case "object":
		sub, err := v.Object()
		if err != nil {
			return bad(err)
		}
		dst = bsoncore.AppendHeader(dst, bsoncore.TypeEmbeddedDocument, key)
		return appendSJSONDoc(dst, el.Get("$s"), sub, nil)
	case "array":
		items, err := v.Array()
		types := el.GetArray("i")
		if err != nil || len(items) != len(types) {
			return bad(fmt.Errorf("array of %d values for %d types: %v", len(items), len(types), err))
		}
		dst = bsoncore.AppendHeader(dst, bsoncore.TypeArray, key)
		idx, dst := bsoncore.AppendArrayStart(dst)
		for i := range items {
			if dst, err = appendSJSONValue(dst, strconv.Itoa(i), types[i], items[i]); err != nil {
				return nil, err
			}
		}
		return bsoncore.AppendArrayEnd(dst, idx)
	case "string":
		s, err := v.StringBytes()
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendStringElement(dst, key, string(s)), nil
	case "objectId":
		s, err := v.StringBytes()
		var id bson.ObjectID
		if err != nil || len(s) != 2*len(id) {
			return bad(fmt.Errorf("object id %q: %v", s, err))
		}
		if _, err := hex.Decode(id[:], s); err != nil {
			return bad(err)
		}
		return bsoncore.AppendObjectIDElement(dst, key, id), nil
	case "date", "long":
		n, err := v.Int64()
		if err != nil {
			return bad(err)
		}
		if typ == "date" {
			return bsoncore.AppendDateTimeElement(dst, key, n), nil
		}
		return bsoncore.AppendInt64Element(dst, key, n), nil
	case "int":
		n, err := v.Int()
		if err != nil || int(int32(n)) != n {
			return bad(fmt.Errorf("int32 %s: %v", v, err))
		}
		return bsoncore.AppendInt32Element(dst, key, int32(n)), nil
	case "double":
		f, err := v.Float64()
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendDoubleElement(dst, key, f), nil
	case "bool":
		b, err := v.Bool()
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendBooleanElement(dst, key, b), nil
	case "null":
		return bsoncore.AppendNullElement(dst, key), nil
	case "binData":
		s, err := v.StringBytes()
		if err != nil {
			return bad(err)
		}
		b, err := base64.StdEncoding.DecodeString(string(s))
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendBinaryElement(dst, key, byte(el.GetInt("s")), b), nil
	case "timestamp":
		n, err := v.Uint64()
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendTimestampElement(dst, key, uint32(n>>32), uint32(n)), nil
	case "regex":
		s, err := v.StringBytes()
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendRegexElement(dst, key, string(s), string(el.GetStringBytes("o"))), nil
	}
	return bad(fmt.Errorf("unknown type"))
}
