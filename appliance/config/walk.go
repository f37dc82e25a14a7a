package config

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// jsonName is the JSON name of a struct field, or "" when it is not
// encoded.
func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return f.Name
	}
	return name
}

func isSecret(f reflect.StructField) bool { return f.Tag.Get("secret") == "true" }

// elemKey is how list elements are matched between two configurations:
// by their Name field when they have one (so inserting a profile does not
// show every later profile as changed), otherwise by position.
func elemKey(v reflect.Value, i int) string {
	e := v.Index(i)
	for e.Kind() == reflect.Pointer {
		if e.IsNil() {
			return "[" + strconv.Itoa(i) + "]"
		}
		e = e.Elem()
	}
	if e.Kind() == reflect.Struct {
		if n := e.FieldByName("Name"); n.IsValid() && n.Kind() == reflect.String && n.String() != "" {
			return "[" + strconv.Quote(n.String()) + "]"
		}
	}
	return "[" + strconv.Itoa(i) + "]"
}

// keyed indexes a list's elements by elemKey; ok is false when two
// elements share a key, in which case lists are matched by position.
func keyed(v reflect.Value) (keys []string, index map[string]int, ok bool) {
	index = make(map[string]int, v.Len())
	for i := 0; i < v.Len(); i++ {
		k := elemKey(v, i)
		if _, dup := index[k]; dup {
			return nil, nil, false
		}
		index[k] = i
		keys = append(keys, k)
	}
	return keys, index, true
}

// Redact returns a copy of c with every secret emptied, for exports, API
// responses and logs.
func Redact(c Config) Config {
	out := Clone(c)
	redact(reflect.ValueOf(&out).Elem())
	return out
}

func redact(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			redact(v.Elem())
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			redact(v.Index(i))
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if isSecret(f) && f.Type.Kind() == reflect.String {
				v.Field(i).SetString("")
				continue
			}
			redact(v.Field(i))
		}
	}
}

// KeepSecrets fills every empty secret in dst from the matching field of
// prev (list elements matched by name, else position). A configuration
// that went through Redact and comes back edited keeps its keys and
// passwords; a secret is removed by removing what holds it: the list
// element, or every other field of its struct (an emptied proxy).
func KeepSecrets(dst *Config, prev Config) {
	keepSecrets(reflect.ValueOf(dst).Elem(), reflect.ValueOf(prev))
}

func keepSecrets(dst, prev reflect.Value) {
	switch dst.Kind() {
	case reflect.Pointer:
		if !dst.IsNil() && !prev.IsNil() {
			keepSecrets(dst.Elem(), prev.Elem())
		}
	case reflect.Slice:
		dk, _, okd := keyed(dst)
		_, pidx, okp := keyed(prev)
		for i := 0; i < dst.Len(); i++ {
			j := i
			if okd && okp {
				var found bool
				if j, found = pidx[dk[i]]; !found {
					continue
				}
			}
			if j < prev.Len() {
				keepSecrets(dst.Index(i), prev.Index(j))
			}
		}
	case reflect.Struct:
		cleared := onlySecrets(dst)
		for i := 0; i < dst.NumField(); i++ {
			f := dst.Type().Field(i)
			if isSecret(f) && f.Type.Kind() == reflect.String {
				if dst.Field(i).String() == "" && !cleared {
					dst.Field(i).SetString(prev.Field(i).String())
				}
				continue
			}
			keepSecrets(dst.Field(i), prev.Field(i))
		}
	}
}

// onlySecrets reports whether a struct that holds secrets has nothing but
// zero values besides them: its owner cleared it (say, removed the proxy),
// so its secrets go too.
func onlySecrets(v reflect.Value) bool {
	holds := false
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if isSecret(f) {
			holds = true
			continue
		}
		if !v.Field(i).IsZero() {
			return false
		}
	}
	return holds
}

// Change is one field that differs between two configurations.
type Change struct {
	Path string `json:"path"` // e.g. `sbc.mediaProfiles["Zoom"].rtcpMode`
	Old  string `json:"old"`  // JSON of the old value; "" when added
	New  string `json:"new"`  // JSON of the new value; "" when removed
}

// String is the change as one readable line.
func (c Change) String() string {
	switch {
	case c.Old == "":
		return c.Path + ": added " + c.New
	case c.New == "":
		return c.Path + ": removed " + c.Old
	}
	return c.Path + ": " + c.Old + " -> " + c.New
}

// secretMark stands for a secret value in a diff.
const secretMark = `"(secret)"`

// Diff lists the fields that differ from a to b, in schema order. Secrets
// are never shown, only that they changed.
func Diff(a, b Config) []Change {
	var out []Change
	diff(&out, "", reflect.ValueOf(a), reflect.ValueOf(b), false)
	return out
}

func diff(out *[]Change, path string, a, b reflect.Value, secret bool) {
	switch a.Kind() {
	case reflect.Pointer:
		switch {
		case a.IsNil() && b.IsNil():
		case a.IsNil():
			*out = append(*out, Change{Path: path, New: show(b, secret)})
		case b.IsNil():
			*out = append(*out, Change{Path: path, Old: show(a, secret)})
		default:
			diff(out, path, a.Elem(), b.Elem(), secret)
		}
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			f := a.Type().Field(i)
			if name := jsonName(f); name != "" {
				diff(out, join(path, name), a.Field(i), b.Field(i), isSecret(f))
			}
		}
	case reflect.Slice:
		diffList(out, path, a, b, secret)
	default:
		if !a.Equal(b) {
			*out = append(*out, Change{Path: path, Old: show(a, secret), New: show(b, secret)})
		}
	}
}

func diffList(out *[]Change, path string, a, b reflect.Value, secret bool) {
	ak, aidx, oka := keyed(a)
	bk, bidx, okb := keyed(b)
	if !oka || !okb {
		ak, bk = nil, nil
		for i := 0; i < max(a.Len(), b.Len()); i++ {
			k := "[" + strconv.Itoa(i) + "]"
			if i < a.Len() {
				ak = append(ak, k)
			}
			if i < b.Len() {
				bk = append(bk, k)
			}
		}
		aidx, bidx = positions(ak), positions(bk)
	}
	for _, k := range ak {
		if j, ok := bidx[k]; ok {
			diff(out, path+k, a.Index(aidx[k]), b.Index(j), secret)
		} else {
			*out = append(*out, Change{Path: path + k, Old: show(a.Index(aidx[k]), secret)})
		}
	}
	for _, k := range bk {
		if _, ok := aidx[k]; !ok {
			*out = append(*out, Change{Path: path + k, New: show(b.Index(bidx[k]), secret)})
		}
	}
}

func positions(keys []string) map[string]int {
	m := make(map[string]int, len(keys))
	for i, k := range keys {
		m[k] = i
	}
	return m
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// show is the JSON of v with its secrets hidden.
func show(v reflect.Value, secret bool) string {
	if secret {
		if v.Kind() == reflect.String && v.String() == "" {
			return `""`
		}
		return secretMark
	}
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	if c.Kind() == reflect.Struct || c.Kind() == reflect.Pointer || c.Kind() == reflect.Slice {
		// Marshal a deep copy with secrets removed.
		b, _ := json.Marshal(c.Interface())
		cp := reflect.New(v.Type())
		_ = json.Unmarshal(b, cp.Interface())
		redact(cp.Elem())
		c = cp.Elem()
	}
	b, err := json.Marshal(c.Interface())
	if err != nil {
		return "?"
	}
	return string(b)
}
