package errcode_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/milequest/pushercm/errcode"
)

func TestOf(t *testing.T) {
	notFound := errcode.New(errcode.NotFound, "x: not found")
	failed := &errcode.Error{Code: errcode.MessageDeliveryFailed, Message: "failed", Temporary: true}
	unknown := &errcode.Error{Code: errcode.MessageDeliveryFailed, Message: "unknown", Err: failed}
	tests := []struct {
		name string
		err  error
		want errcode.Code
	}{
		{"nil", nil, ""},
		{"plain error is internal", errors.New("boom"), errcode.Internal},
		{"sentinel", notFound, errcode.NotFound},
		{"wrapped", fmt.Errorf("op: %w", notFound), errcode.NotFound},
		{"outermost wins", fmt.Errorf("%w: %w", errcode.New(errcode.InvalidArgument, "bad"), notFound), errcode.InvalidArgument},
		{"child of a parent", unknown, errcode.MessageDeliveryFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errcode.Of(tt.err); got != tt.want {
				t.Fatalf("Of = %q, want %q", got, tt.want)
			}
		})
	}
	if !errors.Is(unknown, failed) {
		t.Fatal("a child must match its parent with errors.Is")
	}
	if e, _ := errcode.As(unknown); e != unknown {
		t.Fatal("As must return the outermost *Error")
	}
	if errors.Is(notFound, errcode.New(errcode.NotFound, "x: not found")) {
		t.Fatal("sentinels must keep their identity")
	}
}

type fielded struct{ field string }

func (f fielded) Error() string                        { return "bad " + f.field }
func (f fielded) FieldViolations() []errcode.Violation { return []errcode.Violation{{Field: f.field}} }
func (f fielded) ErrorMetadata() map[string]string {
	return map[string]string{"field": f.field, "k": "inner"}
}

func TestDetails(t *testing.T) {
	coded := &errcode.Error{Code: errcode.InvalidArgument, Message: "bad", Metadata: map[string]string{"k": "outer"}}
	err := fmt.Errorf("%w: %w", coded, errors.Join(fielded{"a"}, fmt.Errorf("x: %w", fielded{"b"})))
	v := errcode.Violations(err)
	if len(v) != 2 || v[0].Field != "a" || v[1].Field != "b" {
		t.Fatalf("Violations = %v, want fields a, b", v)
	}
	md := errcode.Metadata(err)
	if md["k"] != "outer" || md["field"] != "a" {
		t.Fatalf("Metadata = %v, want outer k and the first field", md)
	}
	if len(errcode.Violations(errors.New("plain"))) != 0 || len(errcode.Metadata(nil)) != 0 {
		t.Fatal("no details expected")
	}
}
