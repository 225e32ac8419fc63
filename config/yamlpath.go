package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// checkNode walks a YAML document against the Go type it decodes into and
// reports, by YAML path, keys that type does not have and values of the
// wrong type. yaml.v3 reports both only as strings with a line number and a
// Go type name ("cannot unmarshal !!str `lots` into int"), which tells an
// operator nothing about which setting is wrong.
func checkNode(n *yaml.Node, t reflect.Type) error {
	var errs []error
	walkNode(n, t, "", &errs)
	return errors.Join(errs...)
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func walkNode(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			walkNode(c, t, path, errs)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		walkNode(n.Alias, t, path, errs)
		return
	}
	if n.Tag == "!!null" {
		return // null leaves the default
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textType) {
		// The type decodes itself: let it say what is wrong.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", where(path), err))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			*errs = append(*errs, wrongType(path, "a mapping of settings", n))
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[key.Value]
			if !ok {
				*errs = append(*errs, unknownKey(join(path, key.Value), key, fields))
				continue
			}
			walkNode(val, ft, join(path, key.Value), errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			*errs = append(*errs, wrongType(path, "a mapping", n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkNode(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			*errs = append(*errs, wrongType(path, "a list", n))
			return
		}
		for i, c := range n.Content {
			walkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			*errs = append(*errs, wrongType(path, want(t), n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			*errs = append(*errs, wrongType(path, want(t), n))
		}
	}
}

// yamlFields maps the YAML keys of a struct to their types, following
// inline fields.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range yamlFields(ft) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func want(t reflect.Type) string {
	if t == durationType {
		return "a duration like 30s or 5m"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	}
	return "a " + t.String()
}

func wrongType(path, want string, n *yaml.Node) error {
	got := strconv.Quote(n.Value)
	switch n.Kind {
	case yaml.MappingNode:
		got = "a mapping"
	case yaml.SequenceNode:
		got = "a list"
	}
	return fmt.Errorf("%s: want %s, got %s (line %d)", where(path), want, got, n.Line)
}

func unknownKey(path string, key *yaml.Node, fields map[string]reflect.Type) error {
	if s := closest(key.Value, fields); s != "" {
		return fmt.Errorf("%s: unknown setting (line %d); did you mean %s?", path, key.Line, join(parentOf(path), s))
	}
	return fmt.Errorf("%s: unknown setting (line %d)", path, key.Line)
}

// closest is the known key nearest to key, if it is near enough to be a
// typo: an edit distance of at most a third of the key's length, or the
// same key in another case.
func closest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", len(key)/3+1
	for k := range fields {
		if strings.EqualFold(k, key) {
			return k
		}
		if d := editDistance(key, k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if bestD > len(key)/3 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func parentOf(path string) string {
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[:i]
	}
	return ""
}

func where(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}
