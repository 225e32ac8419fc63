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
