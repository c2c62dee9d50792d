package wire

import (
	"reflect"
	"strings"
)

// detachAbove is the input size from which UnmarshalStrict copies the
// strings it decoded. go-json decodes from its own copy of the input and
// makes every string without escapes a view of that copy: a call ID kept
// from an answer, or a function name kept from a request, would keep the
// whole input alive with it, a result or fn_args of up to tens of MiB.
// Below this size the copy pinned is small and copying would cost every
// request.
const detachAbove = 64 << 10

// detachStrings replaces every string reachable from v (fields, elements,
// map keys and values, values held in interfaces) with a copy of its own.
// depth bounds the walk, which a value the caller filled before the
// decode could make cyclic; decoded JSON is at most MaxDepth deep.
func detachStrings(v reflect.Value, depth int) {
	if depth > 2*MaxDepth+2 {
		return
	}
	depth++
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			v.SetString(strings.Clone(v.String()))
		}
	case reflect.Pointer:
		if !v.IsNil() {
			detachStrings(v.Elem(), depth)
		}
	case reflect.Interface:
		if v.IsNil() {
			return
		}
		// An interface's value cannot be changed in place: detach a
		// settable copy and put it back.
		e := v.Elem()
		c := reflect.New(e.Type()).Elem()
		c.Set(e)
		detachStrings(c, depth)
		if v.CanSet() {
			v.Set(c)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				detachStrings(v.Field(i), depth)
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // bytes, a json.RawMessage included, are copies already
		}
		for i := range v.Len() {
			detachStrings(v.Index(i), depth)
		}
	case reflect.Array:
		for i := range v.Len() {
			detachStrings(v.Index(i), depth)
		}
	case reflect.Map:
		if v.IsNil() {
			return
		}
		entries := make([][2]reflect.Value, 0, v.Len())
		for it := v.MapRange(); it.Next(); {
			k := reflect.New(v.Type().Key()).Elem()
			k.Set(it.Key())
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(it.Value())
			detachStrings(k, depth)
			detachStrings(e, depth)
			entries = append(entries, [2]reflect.Value{k, e})
		}
		v.Clear()
		for _, kv := range entries {
			v.SetMapIndex(kv[0], kv[1])
		}
	}
}
