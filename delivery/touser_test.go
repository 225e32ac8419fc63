package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// toUserDriver implements only SendToUser; it fails while fail is set.
type toUserDriver struct {
	Driver // nil: other methods are not called
	sent   int
	fail   error
}

func (d *toUserDriver) SendToUser(_ context.Context, _, _, _ string) (Result, error) {
	if d.fail != nil {
		return Result{}, d.fail
	}
	d.sent++
	return Result{DeliveredTo: 2}, nil
}

func TestSendToUserOnce(t *testing.T) {
	store, err := NewMemoryStore(MemoryStoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	d := &toUserDriver{fail: fmt.Errorf("%w: down", ErrUnavailable)}
	p := NewPublisher(d, WithIdempotencyStore(store))
	ctx := context.Background()

	// A failed delivery releases the key, so the retry delivers.
	if _, err := p.SendToUserOnce(ctx, "k1", "u1", "badge", "{}"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	d.fail = nil
	o, err := p.SendToUserOnce(ctx, "k1", "u1", "badge", "{}")
	if err != nil || o.Duplicate || o.DeliveredTo != 2 || o.EventID != "k1" {
		t.Fatalf("retry: %+v %v", o, err)
	}
	// A repeat is a duplicate and is not delivered.
	o, err = p.SendToUserOnce(ctx, "k1", "u1", "badge", "{}")
	if err != nil || !o.Duplicate || o.DeliveredTo != 0 || d.sent != 1 {
		t.Fatalf("repeat: %+v %v (sent %d)", o, err, d.sent)
	}
	// Without an id one is generated and every call delivers.
	a, _ := p.SendToUserOnce(ctx, "", "u1", "badge", "{}")
	b, _ := p.SendToUserOnce(ctx, "", "u1", "badge", "{}")
	if a.EventID == "" || a.EventID == b.EventID || a.Duplicate || b.Duplicate || d.sent != 3 {
		t.Fatalf("generated ids %+v %+v (sent %d)", a, b, d.sent)
	}

	// Validation names the request's fields and reserves nothing.
	_, err = p.SendToUserOnce(ctx, strings.Repeat("i", MaxEventIDLength+1), "", "pusher:x", "{}")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want a ValidationError", err)
	}
	var fields []string
	for _, v := range ve.Violations {
		fields = append(fields, v.Field)
	}
	if strings.Join(fields, ",") != "id,user_id,name" {
		t.Fatalf("fields %v", fields)
	}
	if d.sent != 3 {
		t.Fatalf("an invalid event was delivered")
	}
}
