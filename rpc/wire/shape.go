package wire

import (
	"context"
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
)

// A shape is what the strict scanner knows of the Go value a JSON value is
// decoded into: which JSON values it takes and, for an object, its fields.
// A nil *shape takes any JSON value and checks only its syntax: that is
// json.RawMessage, an interface, and any type that decodes itself.
type shape struct {
	takes  valueKind // the JSON values the Go type takes; null always
	want   string    // what a message says the type wants: "an integer"
	num    numKind   // how a number is checked
	bits   int       // the size of a number, for its range
	fields map[string]*field
	names  []string // the keys of fields, for the case check
	isMap  bool     // an object with any keys, each value of shape elem
	elem   *shape   // the shape of an array's elements or a map's values
	// required are the keys an object of this shape must hold: fields
	// tagged required:"true", where 0 or "" would mean something else
	// than "not given".
	required []string
}

// A field is one JSON key of a struct.
type field struct {
	name  string
	shape *shape
}

// numKind says how the scanner checks a number for the Go type it goes in.
type numKind uint8

const (
	numAny   numKind = iota
	numInt           // an integer that fits bits, signed
	numUint          // an integer that fits bits, not negative
	numFloat         // a number within the range of a float of bits
)

// shapes caches the shape of every type decoded, keyed by reflect.Type.
var shapes sync.Map

// shapeOf returns the shape of t, built once per type.
func shapeOf(t reflect.Type) *shape {
	if s, ok := shapes.Load(t); ok {
		return s.(*shape)
	}
	s := (&shapeBuilder{structs: map[reflect.Type]*shape{}}).build(t)
	shapes.Store(t, s)
	return s
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	contextType         = reflect.TypeFor[context.Context]()
	errorType           = reflect.TypeFor[error]()
)

// decodesItself reports whether the JSON library hands the values of t to
// a method of t (or *t) instead of decoding them by t's structure. What
// such a method takes is its own business; the scanner checks the syntax
// only.
func decodesItself(t reflect.Type) bool {
	for _, i := range []reflect.Type{unmarshalerType, textUnmarshalerType} {
		if t.Implements(i) || reflect.PointerTo(t).Implements(i) {
			return true
		}
	}
	return codec.ContextDecoders && (unmarshalsWithContext(t) || unmarshalsWithContext(reflect.PointerTo(t)))
}

// unmarshalsWithContext reports whether t has go-json's other decoding
// method, UnmarshalJSON(context.Context, []byte) error (its
// json.UnmarshalerContext), which go-json prefers when a daemon decodes;
// encoding/json, a function process's codec, ignores it and decodes such
// a type by its structure, strictly checked like any other.
// It is matched by its signature so that this package need not link
// go-json (see Codec).
func unmarshalsWithContext(t reflect.Type) bool {
	if t.Kind() == reflect.Interface {
		return false
	}
	m, ok := t.MethodByName("UnmarshalJSON")
	return ok && m.Type.NumIn() == 3 && m.Type.In(1) == contextType &&
		m.Type.In(2) == reflect.TypeFor[[]byte]() &&
		m.Type.NumOut() == 1 && m.Type.Out(0) == errorType
}

// shapeBuilder builds the shape of a type; structs holds the structs
// under construction so that a recursive type ends.
type shapeBuilder struct {
	structs map[reflect.Type]*shape
}

func (b *shapeBuilder) build(t reflect.Type) *shape {
	if decodesItself(t) {
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return b.build(t.Elem())
	case reflect.String:
		return &shape{takes: jsString, want: "a string"}
	case reflect.Bool:
		return &shape{takes: jsBool, want: "true or false"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &shape{takes: jsNumber, want: "an integer", num: numInt, bits: t.Bits()}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return &shape{takes: jsNumber, want: "an integer >= 0", num: numUint, bits: t.Bits()}
	case reflect.Float32, reflect.Float64:
		return &shape{takes: jsNumber, want: "a number", num: numFloat, bits: t.Bits()}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !decodesItself(t.Elem()) {
			return &shape{takes: jsString, want: "a base64 string"}
		}
		return &shape{takes: jsArray, want: "an array", elem: b.build(t.Elem())}
	case reflect.Array:
		return &shape{takes: jsArray, want: "an array", elem: b.build(t.Elem())}
	case reflect.Map:
		return &shape{takes: jsObject, want: "an object", isMap: true, elem: b.build(t.Elem())}
	case reflect.Struct:
		return b.structShape(t)
	}
	// Interfaces take anything; channels, functions and complex numbers
	// take nothing, which go-json says itself.
	return nil
}

// structShape builds the shape of a struct: its fields by their JSON
// names, with encoding/json's rules for tags and embedded structs.
func (b *shapeBuilder) structShape(t reflect.Type) *shape {
	if s, ok := b.structs[t]; ok {
		return s
	}
	s := &shape{takes: jsObject, want: "an object", fields: map[string]*field{}}
	b.structs[t] = s
	var all []jsonField
	collectFields(t, 0, map[reflect.Type]bool{t: true}, &all)
	for _, f := range dominantFields(all) {
		fs := b.build(f.typ)
		if f.quoted {
			// ",string" puts the value in a JSON string; go-json parses it.
			fs = &shape{takes: jsString, want: "a string"}
		}
		if f.unit != "" && fs != nil && fs.num != numAny {
			withUnit := *fs
			withUnit.want = "a number of " + f.unit
			fs = &withUnit
		}
		s.fields[f.name] = &field{name: f.name, shape: fs}
		s.names = append(s.names, f.name)
		if f.required {
			s.required = append(s.required, f.name)
		}
	}
	return s
}

// A jsonField is a struct field as JSON sees it, found depth levels of
// embedding down.
type jsonField struct {
	name   string
	typ    reflect.Type
	depth  int
	tagged bool
	quoted bool   // the ",string" option
	unit   string // the unit tag: "seconds" makes a number "a number of seconds"
	// required is the tag required:"true": the key must be present.
	required bool
}

// collectFields appends the JSON fields of struct t, those of embedded
// structs included, to out.
func collectFields(t reflect.Type, depth int, visited map[reflect.Type]bool, out *[]jsonField) {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := sf.Type
		if sf.Anonymous {
			et := ft
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if name == "" && et.Kind() == reflect.Struct {
				if !visited[et] {
					visited[et] = true
					collectFields(et, depth+1, visited, out)
				}
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		f := jsonField{name: name, typ: ft, depth: depth, tagged: name != "", unit: sf.Tag.Get("unit"), required: sf.Tag.Get("required") == "true"}
		if f.name == "" {
			f.name = sf.Name
		}
		if kind := derefKind(ft); strings.Contains(","+opts+",", ",string,") &&
			(kind == reflect.String || kind == reflect.Bool || kind >= reflect.Int && kind <= reflect.Float64) {
			f.quoted = true
		}
		*out = append(*out, f)
	}
}

func derefKind(t reflect.Type) reflect.Kind {
	if t.Kind() == reflect.Pointer {
		return t.Elem().Kind()
	}
	return t.Kind()
}

// dominantFields keeps, of the fields sharing a name, the one Go's
// encoding/json would decode into: the shallowest, then the tagged one. A
// name it cannot settle names no field at all.
func dominantFields(all []jsonField) []jsonField {
	byName := map[string][]jsonField{}
	var order []string
	for _, f := range all {
		if _, ok := byName[f.name]; !ok {
			order = append(order, f.name)
		}
		byName[f.name] = append(byName[f.name], f)
	}
	var out []jsonField
	for _, name := range order {
		fs := byName[name]
		top := fs[0].depth
		for _, f := range fs {
			top = min(top, f.depth)
		}
		var shallow, tagged []jsonField
		for _, f := range fs {
			if f.depth == top {
				shallow = append(shallow, f)
				if f.tagged {
					tagged = append(tagged, f)
				}
			}
		}
		switch {
		case len(shallow) == 1:
			out = append(out, shallow[0])
		case len(tagged) == 1:
			out = append(out, tagged[0])
		}
	}
	return out
}
