package authz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
)

// CEL variables available to rule expressions:
//
//	claims    map(string, dyn)     every token claim (numbers: int or double)
//	channel   string               the channel name
//	segments  map(string, string)  the pattern's {name} captures
//	user_info map(string, dyn)     a trusted caller's user_info (gRPC, rules check);
//	                               {} if none, and always {} on the browser
//	                               endpoints, whose user_info is not trusted
//	user_id   string               the token's user id (configured claim)
//	teams     list(string)         the token's teams (configured claim)
//	roles     list(string)         the token's roles (configured claim)
func newCELEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("channel", cel.StringType),
		cel.Variable("segments", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("user_info", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("user_id", cel.StringType),
		cel.Variable("teams", cel.ListType(cel.StringType)),
		cel.Variable("roles", cel.ListType(cel.StringType)),
		ext.Strings(),
	)
}

// compileExpression type-checks expr and plans it once. The result must be a
// bool (or dyn, checked at run time).
func compileExpression(env *cel.Env, expr string) (cel.Program, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, fmt.Errorf("expression must be a bool, it is %s", t)
	}
	return env.Program(ast, cel.EvalOptions(cel.OptOptimize))
}

// celPrincipal is a principal converted to CEL values once, so that rule
// evaluation reads ready-made values instead of adapting Go maps per call.
type celPrincipal struct {
	claims ref.Val
	userID ref.Val
	teams  ref.Val
	roles  ref.Val
}

func newCELPrincipal(p *Principal) *celPrincipal {
	return &celPrincipal{
		claims: toCEL(p.Claims),
		userID: types.String(p.Subject),
		teams:  types.NewStringList(types.DefaultTypeAdapter, p.Teams),
		roles:  types.NewStringList(types.DefaultTypeAdapter, p.Roles),
	}
}

// toCEL deep-converts decoded JSON into CEL values.
func toCEL(v any) ref.Val {
	switch t := v.(type) {
	case nil:
		return types.NullValue
	case string:
		return types.String(t)
	case bool:
		return types.Bool(t)
	case int64:
		return types.Int(t)
	case float64:
		return types.Double(t)
	case map[string]any:
		m := make(map[ref.Val]ref.Val, len(t))
		for k, e := range t {
			m[types.String(k)] = toCEL(e)
		}
		return types.NewRefValMap(types.DefaultTypeAdapter, m)
	case []any:
		l := make([]ref.Val, len(t))
		for i, e := range t {
			l[i] = toCEL(e)
		}
		return types.NewRefValList(types.DefaultTypeAdapter, l)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

var emptyMap = types.NewRefValMap(types.DefaultTypeAdapter, map[ref.Val]ref.Val{})

// activation resolves CEL variables lazily from the request; pooled so an
// evaluation allocates nothing for its variables.
type activation struct {
	p        *celPrincipal
	channel  string
	userInfo []byte  // raw JSON object, parsed only if the expression reads it
	uiVal    ref.Val // userInfo parsed, once per evaluation
	segs     segmentsVal
}

var activationPool = sync.Pool{New: func() any { return new(activation) }}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "claims":
		return a.p.claims, true
	case "channel":
		return types.String(a.channel), true
	case "segments":
		return &a.segs, true
	case "user_info":
		if a.uiVal == nil {
			a.uiVal = parseUserInfo(a.userInfo)
		}
		return a.uiVal, true
	case "user_id":
		return a.p.userID, true
	case "teams":
		return a.p.teams, true
	case "roles":
		return a.p.roles, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

func parseUserInfo(raw []byte) ref.Val {
	if len(raw) == 0 {
		return emptyMap
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&m); err != nil || m == nil {
		return types.NewErr("user_info is not a JSON object")
	}
	return toCEL(normalise(m))
}

// segmentsVal is the CEL map of pattern captures, read straight from the
// match spans. Field access (segments.teamId) is allocation-free; rarer
// operations (iteration, size, equality) go through a materialised map.
type segmentsVal struct {
	pat     *pattern
	channel string
	caps    captures // a copy, so the caller's array stays on its stack
}

var _ traits.Mapper = (*segmentsVal)(nil)

func (s *segmentsVal) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	for i, n := range s.pat.captures {
		if n == string(k) {
			sp := s.caps[i]
			return types.String(s.channel[sp.start:sp.end]), true
		}
	}
	return nil, false
}

func (s *segmentsVal) full() traits.Mapper {
	m := make(map[string]string, len(s.pat.captures))
	for i, n := range s.pat.captures {
		sp := s.caps[i]
		m[n] = s.channel[sp.start:sp.end]
	}
	return types.NewStringStringMap(types.DefaultTypeAdapter, m)
}

func (s *segmentsVal) Get(key ref.Val) ref.Val {
	if v, ok := s.Find(key); ok {
		return v
	}
	return s.full().Get(key)
}
func (s *segmentsVal) Contains(key ref.Val) ref.Val { return s.full().Contains(key) }
func (s *segmentsVal) Iterator() traits.Iterator    { return s.full().Iterator() }
func (s *segmentsVal) Size() ref.Val                { return types.Int(len(s.pat.captures)) }
func (s *segmentsVal) ConvertToNative(t reflect.Type) (any, error) {
	return s.full().ConvertToNative(t)
}
func (s *segmentsVal) ConvertToType(t ref.Type) ref.Val { return s.full().ConvertToType(t) }
func (s *segmentsVal) Equal(o ref.Val) ref.Val          { return s.full().Equal(o) }
func (s *segmentsVal) Type() ref.Type                   { return types.MapType }
func (s *segmentsVal) Value() any                       { return s.full().Value() }
