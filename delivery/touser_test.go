package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// userDriver records SendToUser calls of a recordingDriver.
type userDriver struct {
	*recordingDriver
	sends map[string]int
	fail  error
}

func (d *userDriver) SendToUser(_ context.Context, userID, name, data string) (Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return Result{}, d.fail
	}
	d.sends[userID+"/"+name]++
	return Result{DeliveredTo: 2}, nil
}

func TestSendToUserOnce(t *testing.T) {
	d := &userDriver{recordingDriver: newRecordingDriver(), sends: map[string]int{}}
	store, _ := NewMemoryStore(MemoryStoreConfig{})
	obs := &countingObserver{}
	p := NewPublisher(d, WithIdempotencyStore(store), WithObserver(obs))
	ctx := context.Background()

	out, err := p.SendToUserOnce(ctx, "n1", "u7", "achievement", "{}")
	if err != nil || out.Duplicate || out.DeliveredTo != 2 || out.EventID != "n1" {
		t.Fatalf("first = %+v, %v", out, err)
	}
	out, err = p.SendToUserOnce(ctx, "n1", "u7", "achievement", "{}")
	if err != nil || !out.Duplicate || out.DeliveredTo != 0 {
		t.Fatalf("repeat = %+v, %v", out, err)
	}
	// Generated ids are never duplicates.
	a, _ := p.SendToUserOnce(ctx, "", "u7", "achievement", "{}")
	b, _ := p.SendToUserOnce(ctx, "", "u7", "achievement", "{}")
	if a.EventID == "" || a.EventID == b.EventID || a.Duplicate || b.Duplicate {
		t.Fatalf("generated: %+v %+v", a, b)
	}
	if got := d.sends["u7/achievement"]; got != 3 {
		t.Fatalf("sends = %d, want 3", got)
	}

	// A failure releases the id; the retry delivers.
	d.fail = fmt.Errorf("%w: down", ErrUnavailable)
	if _, err := p.SendToUserOnce(ctx, "n2", "u8", "x", "{}"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	d.fail = nil
	if out, err := p.SendToUserOnce(ctx, "n2", "u8", "x", "{}"); err != nil || out.Duplicate {
		t.Fatalf("retry = %+v, %v", out, err)
	}
	if obs.all != 6 || obs.dup != 1 || obs.failed != 1 {
		t.Fatalf("observer = %+v", obs)
	}
}

func TestSendToUserOnceValidation(t *testing.T) {
	d := &userDriver{recordingDriver: newRecordingDriver(), sends: map[string]int{}}
	p := NewPublisher(d)
	_, err := p.SendToUserOnce(context.Background(), strings.Repeat("i", 129), "", "n", "{}")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	if got := strings.Join(fields(ve), ","); got != "id,user_id" {
		t.Fatalf("violations = %s", got)
	}
	if len(d.sends) != 0 {
		t.Fatal("an invalid request was sent")
	}
}
