package store

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fastjson"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The embedded server (FerretDB 1.24, the last v1 release, so the format is
// frozen) stores each document in SQLite as "SJSON": plain JSON values plus
// a schema under "$s" that gives each field's BSON type and the key order:
//
//	{"$s": {"p": {"_id": {"t": "objectId"}, "at": {"t": "date"}, "r": {"t": "array", "i": [{"t": "object", "$s": {...}}]}},
//	        "$k": ["_id", "at", "r"]},
//	 "_id": "6b0f04a62addcf4aec0a0669", "at": 1796146342372, "r": [{...}]}
//
// Listings read their page straight from SQLite (listindex.go) and decode it
// here, skipping the server's wire round trip and its decoder, which were
// most of a listing's cost. The format is described in FerretDB's
// internal/handler/sjson package, which cannot be imported.
//
// The decoder goes by the Go type of the field, as the BSON decoder does,
// so it needs no schema: an ObjectID field takes the hex string, a
// time.Time the milliseconds of a date. The schema is more than half of a
// stored ticket, so it is stepped over unparsed; fastjson (about five times
// faster than encoding/json) parses the rest. Fields of the document the
// type does not have are ignored, and fields named in skip (the
// ever-growing audit log) are not decoded, as if absent.

// errStoredFormat marks a stored document the decoder does not take (one
// ticketd did not write: an import of other types, a null in an array, a
// timestamp where a date belongs). The listing then asks the database
// server, whose decoder follows the stored types.
var errStoredFormat = errors.New("a stored document in a form the listing does not decode")

// sjsonDecoder decodes stored documents into values of one Go type.
type sjsonDecoder struct {
	typ    reflect.Type
	decode decodeFunc
}

type decodeFunc func(v *fastjson.Value, dst reflect.Value) error

var (
	objectIDType = reflect.TypeFor[bson.ObjectID]()
	timeType     = reflect.TypeFor[time.Time]()
)

// newSJSONDecoder compiles a decoder for documents of type T (a struct),
// without its fields named in skip.
func newSJSONDecoder[T any](skip ...string) (*sjsonDecoder, error) {
	typ := reflect.TypeFor[T]()
	decode, err := compileStruct(typ, skip)
	if err != nil {
		return nil, err
	}
	return &sjsonDecoder{typ: typ, decode: decode}, nil
}

// decodeInto decodes doc into dst, a pointer to the decoder's type; p is
// the parser to use (its values live until its next parse).
func (d *sjsonDecoder) decodeInto(p *fastjson.Parser, doc []byte, dst any) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.Elem().Type() != d.typ {
		return fmt.Errorf("decode stored document into %T, want *%s", dst, d.typ)
	}
	v, err := p.ParseBytes(withoutSchema(doc))
	if err == nil {
		err = d.decode(v, rv.Elem())
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errStoredFormat, err)
	}
	return nil
}

// withoutSchema returns doc without its leading "$s" member, or doc when it
// does not lead with one (the decoder ignores it there too).
func withoutSchema(doc []byte) []byte {
	const lead = `{"$s":`
	if !bytes.HasPrefix(doc, []byte(lead)) {
		return doc
	}
	end, ok := skipObject(doc, len(lead))
	switch {
	case !ok || end >= len(doc):
		return doc
	case doc[end] == ',':
		return append([]byte{'{'}, doc[end+1:]...)
	case doc[end] == '}':
		return []byte("{}")
	}
	return doc
}

// skipObject returns the index just past the JSON object that starts at
// b[i], and false if there is none. The server wrote b, so it is well-formed
// JSON and only strings need care.
func skipObject(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1, true
			}
		}
	}
	return 0, false
}

// compile returns the decoder of a field of type t.
func compile(t reflect.Type) (decodeFunc, error) {
	switch {
	case t == objectIDType:
		return decodeObjectID, nil
	case t == timeType:
		return decodeTime, nil
	}
	switch t.Kind() {
	case reflect.String:
		return decodeString, nil
	case reflect.Bool:
		return decodeBool, nil
	case reflect.Int, reflect.Int32, reflect.Int64:
		return decodeInt, nil
	case reflect.Float64:
		return decodeFloat, nil
	case reflect.Pointer:
		elem, err := compile(t.Elem())
		if err != nil {
			return nil, err
		}
		return func(v *fastjson.Value, dst reflect.Value) error {
			if v.Type() == fastjson.TypeNull {
				dst.SetZero()
				return nil
			}
			p := reflect.New(t.Elem())
			if err := elem(v, p.Elem()); err != nil {
				return err
			}
			dst.Set(p)
			return nil
		}, nil
	case reflect.Slice:
		elem, err := compile(t.Elem())
		if err != nil {
			return nil, err
		}
		return func(v *fastjson.Value, dst reflect.Value) error {
			if v.Type() == fastjson.TypeNull {
				dst.SetZero()
				return nil
			}
			items, err := v.Array()
			if err != nil {
				return err
			}
			s := reflect.MakeSlice(t, len(items), len(items))
			for i, item := range items {
				if err := elem(item, s.Index(i)); err != nil {
					return fmt.Errorf("%d: %w", i, err)
				}
			}
			dst.Set(s)
			return nil
		}, nil
	case reflect.Struct:
		return compileStruct(t, nil)
	}
	return nil, fmt.Errorf("no stored-document decoder for %s", t)
}

// compileStruct returns the decoder of a struct, by its fields' bson names.
func compileStruct(t reflect.Type, skip []string) (decodeFunc, error) {
	type field struct {
		index  int
		decode decodeFunc
	}
	fields := map[string]field{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("bson"), ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if !f.IsExported() || name == "-" || slices.Contains(skip, name) {
			continue
		}
		decode, err := compile(f.Type)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", t, f.Name, err)
		}
		fields[name] = field{i, decode}
	}
	return func(v *fastjson.Value, dst reflect.Value) error {
		obj, err := v.Object()
		if err != nil {
			return err
		}
		obj.Visit(func(key []byte, fv *fastjson.Value) {
			f, ok := fields[string(key)]
			switch {
			case !ok || err != nil:
				return
			case fv.Type() == fastjson.TypeNull:
				dst.Field(f.index).SetZero()
			default:
				if e := f.decode(fv, dst.Field(f.index)); e != nil {
					err = fmt.Errorf("%s: %w", key, e)
				}
			}
		})
		return err
	}, nil
}
func decodeObjectID(v *fastjson.Value, dst reflect.Value) error {
	s, err := v.StringBytes()
	var id bson.ObjectID
	if err != nil || len(s) != 2*len(id) {
		return fmt.Errorf("object id %s: %v", v, err)
	}
	if _, err := hex.Decode(id[:], s); err != nil {
		return err
	}
	dst.Set(reflect.ValueOf(id))
	return nil
}

// decodeTime takes a date, stored as milliseconds since the epoch; the BSON
// decoder gives it in UTC. A number past the year 9999 is not a date
// ticketd wrote (a BSON timestamp is stored as a number too).
func decodeTime(v *fastjson.Value, dst reflect.Value) error {
	ms, err := v.Int64()
	if err != nil {
		return fmt.Errorf("date %s: %w", v, err)
	}
	t := time.UnixMilli(ms).UTC()
	if t.Year() < 1 || t.Year() > 9999 {
		return fmt.Errorf("date %d: not a date of years 1 to 9999", ms)
	}
	dst.Set(reflect.ValueOf(t))
	return nil
}

func decodeInt(v *fastjson.Value, dst reflect.Value) error {
	n, err := v.Int64()
	if err != nil {
		return err
	}
	if dst.OverflowInt(n) {
		return fmt.Errorf("%d overflows %s", n, dst.Type())
	}
	dst.SetInt(n)
	return nil
}

// scalar is the decoder of a value read by get and set by set.
func scalar[T any](get func(*fastjson.Value) (T, error), set func(reflect.Value, T)) decodeFunc {
	return func(v *fastjson.Value, dst reflect.Value) error {
		x, err := get(v)
		if err != nil {
			return err
		}
		set(dst, x)
		return nil
	}
}

var (
	decodeString = scalar(func(v *fastjson.Value) (string, error) {
		b, err := v.StringBytes()
		return string(b), err
	}, reflect.Value.SetString)
	decodeBool  = scalar((*fastjson.Value).Bool, reflect.Value.SetBool)
	decodeFloat = scalar((*fastjson.Value).Float64, reflect.Value.SetFloat)
)
