package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/milequest/pushercm/errcode"
	"github.com/milequest/pushercm/internal/redistest"
)

// controlNode is one node's Broker and Control on its own client; handle
// answers for it.
func controlNode(t *testing.T, addr, prefix, id string, handle ControlHandler) *Control {
	t.Helper()
	cfg := Config{Prefix: prefix, NodeID: id}
	client := newClient(t, addr)
	var c *Control
	b := NewBroker(client, cfg, func(m Message) {
		if m.Channel == ControlChannel {
			c.Receive(m)
		}
	})
	t.Cleanup(b.Close)
	c = NewControl(client, cfg, func(ctx context.Context, p []byte) error {
		_, err := b.Publish(ctx, ControlChannel, p, PublishOptions{})
		return err
	}, handle)
	if err := b.Subscribe(context.Background(), ControlChannel); err != nil {
		t.Fatal(err)
	}
	return c
}

var errNotHere = errcode.New(errcode.NotFound, "not here")

func TestControlAsksNodesThroughRedis(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	answer := func(id string) ControlHandler {
		return func(_ context.Context, op string, body []byte) ([]byte, error) {
			if op == "find" && string(body) != id {
				return nil, errNotHere
			}
			if op == "boom" {
				return nil, errors.New("secret internal cause")
			}
			return []byte(id + ":" + op), nil
		}
	}
	a := controlNode(t, addr, prefix, "a", answer("a"))
	controlNode(t, addr, prefix, "b", answer("b"))
	controlNode(t, addr, prefix, "c", answer("c"))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	replies, err := a.Ask(ctx, []string{"b", "c"}, "hello", nil, nil)
	if err != nil || len(replies) != 2 {
		t.Fatalf("Ask b and c: %v %v, want two replies", replies, err)
	}
	got := map[string]string{}
	for _, r := range replies {
		got[r.Node] = string(r.Body)
	}
	if got["b"] != "b:hello" || got["c"] != "c:hello" {
		t.Fatalf("replies %v", got)
	}

	// A node that holds the thing settles the question; the others say NOT_FOUND.
	replies, err = a.Ask(ctx, []string{"b", "c"}, "find", []byte("c"), func(r Reply) bool { return r.Code == "" })
	if err != nil || replies[len(replies)-1].Node != "c" || replies[len(replies)-1].Err() != nil {
		t.Fatalf("find c: %v %v", replies, err)
	}
	for _, r := range replies[:len(replies)-1] {
		if errcode.Of(r.Err()) != errcode.NotFound {
			t.Fatalf("b answered %v, want NOT_FOUND", r)
		}
	}

	// An internal error crosses as INTERNAL, without its cause.
	replies, err = a.Ask(ctx, []string{"b"}, "boom", nil, nil)
	if err != nil || errcode.Of(replies[0].Err()) != errcode.Internal || replies[0].Error == "secret internal cause" {
		t.Fatalf("boom: %+v %v", replies, err)
	}

	// A node nobody runs does not answer: the asker stops at its deadline.
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	start := time.Now()
	replies, err = a.Ask(short, []string{"b", "ghost"}, "hello", nil, nil)
	if !errors.Is(err, ErrNoAnswer) || len(replies) != 1 || replies[0].Node != "b" {
		t.Fatalf("Ask with a silent node: %v %v, want b's reply and ErrNoAnswer", replies, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Ask waited %s past a 300ms deadline", d)
	}
	if _, err := a.Ask(context.Background(), []string{"b"}, "hello", nil, nil); err == nil {
		t.Fatal("Ask without a deadline succeeded, want an error")
	}
}
