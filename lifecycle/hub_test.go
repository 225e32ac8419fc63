package lifecycle_test

import (
	"errors"
	"testing"

	"github.com/milequest/pushercm/lifecycle"
)

func drain(w *lifecycle.Watcher) []lifecycle.EventType {
	var out []lifecycle.EventType
	for e := range w.C() {
		out = append(out, e.Type)
	}
	return out
}

func TestMessageEventsOnlyReachMessageWatchers(t *testing.T) {
	var h lifecycle.Hub
	plain, all := h.Watch(8), h.WatchMessages(8)
	if !h.WatchingMessages() {
		t.Fatal("WatchingMessages false with a message watcher")
	}
	for _, typ := range []lifecycle.EventType{lifecycle.Connected, lifecycle.Published, lifecycle.ClientEvent, lifecycle.Webhook, lifecycle.Disconnected} {
		h.Emit(lifecycle.Event{Type: typ})
	}
	plain.Close()
	all.Close()
	if got := drain(plain); len(got) != 2 || got[0] != lifecycle.Connected || got[1] != lifecycle.Disconnected {
		t.Fatalf("lifecycle watcher got %v", got)
	}
	if got := drain(all); len(got) != 5 {
		t.Fatalf("message watcher got %v", got)
	}
	if plain.Err() != nil || all.Err() != nil {
		t.Fatalf("Close left errors %v %v", plain.Err(), all.Err())
	}
	if h.WatchingMessages() {
		t.Fatal("WatchingMessages true after the message watcher closed")
	}
}

func TestLaggingWatcherIsCutOffAlone(t *testing.T) {
	var h lifecycle.Hub
	slow, fast := h.Watch(1), h.Watch(4)
	for range 3 {
		h.Emit(lifecycle.Event{Type: lifecycle.Subscribed})
	}
	if got := drain(slow); len(got) != 1 || !errors.Is(slow.Err(), lifecycle.ErrLagged) {
		t.Fatalf("slow watcher got %v, err %v", got, slow.Err())
	}
	for i := range 3 {
		if e := <-fast.C(); e.Type != lifecycle.Subscribed {
			t.Fatalf("fast event %d: %+v", i, e)
		}
	}
	if fast.Err() != nil {
		t.Fatal(fast.Err())
	}
	slow.Close() // after the cut-off: a no-op
	if !errors.Is(slow.Err(), lifecycle.ErrLagged) {
		t.Fatalf("Close after lag changed Err to %v", slow.Err())
	}
}

func TestCloseEndsPresentAndFutureWatchers(t *testing.T) {
	var h lifecycle.Hub
	errStop := errors.New("stopped")
	w := h.WatchMessages(2)
	h.Close(errStop)
	if _, open := <-w.C(); open || !errors.Is(w.Err(), errStop) {
		t.Fatalf("after Close: open=%v err=%v", open, w.Err())
	}
	later := h.Watch(2)
	if _, open := <-later.C(); open || !errors.Is(later.Err(), errStop) {
		t.Fatalf("watch after Close: open=%v err=%v", open, later.Err())
	}
	if h.WatchingMessages() {
		t.Fatal("WatchingMessages true after Close")
	}
	h.Emit(lifecycle.Event{Type: lifecycle.Connected}) // nobody left; must not panic
}

func TestEnded(t *testing.T) {
	errStop := errors.New("draining")
	w := lifecycle.Ended(errStop)
	if _, open := <-w.C(); open || !errors.Is(w.Err(), errStop) {
		t.Fatalf("open=%v err=%v", open, w.Err())
	}
	w.Close()
	if !errors.Is(w.Err(), errStop) {
		t.Fatalf("Close changed Err to %v", w.Err())
	}
}
