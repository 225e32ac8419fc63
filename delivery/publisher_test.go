package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/milequest/pushercm/internal/pushertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recordingDriver is a Driver that counts deliveries per event id and can be told to
// fail events by id.
type recordingDriver struct {
	mu        sync.Mutex
	delivered map[string]int
	failIDs   map[string]error
	calls     atomic.Int64
	gate      chan struct{} // when non-nil, Publish waits for it (concurrency tests)
}

func newRecordingDriver() *recordingDriver {
	return &recordingDriver{delivered: map[string]int{}, failIDs: map[string]error{}}
}

func (d *recordingDriver) fail(id string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		delete(d.failIDs, id)
	} else {
		d.failIDs[id] = err
	}
}

func (d *recordingDriver) count(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.delivered[id]
}

func (d *recordingDriver) Publish(ctx context.Context, e Event) (Result, error) {
	d.calls.Add(1)
	if d.gate != nil {
		<-d.gate
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.failIDs[e.ID]; err != nil {
		return Result{}, err
	}
	d.delivered[e.ID]++
	return Result{DeliveredTo: len(e.Channels)}, nil
}

func (d *recordingDriver) PublishBatch(ctx context.Context, events []Event) ([]Result, []error) {
	res := make([]Result, len(events))
	errs := make([]error, len(events))
	for i, e := range events {
		res[i], errs[i] = d.Publish(ctx, e)
	}
	return res, errs
}

func (d *recordingDriver) SendToUser(ctx context.Context, userID, name, data string) (Result, error) {
	return Result{DeliveredTo: 1}, nil
}
func (d *recordingDriver) Channels(context.Context, string) ([]ChannelInfo, error) { return nil, nil }
func (d *recordingDriver) Channel(context.Context, string) (ChannelInfo, error) {
	return ChannelInfo{}, nil
}
func (d *recordingDriver) PresenceMembers(context.Context, string) ([]Member, error) {
	return nil, nil
}
func (d *recordingDriver) Health() Health { return Health{Driver: "recording", Healthy: true} }

func newTestPublisher(t *testing.T, d Driver) (*Publisher, *MemoryStore) {
	t.Helper()
	store, err := NewMemoryStore(MemoryStoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return NewPublisher(d, WithIdempotencyStore(store)), store
}

func TestPublishSameIDTwiceDeliversOnce(t *testing.T) {
	d := newRecordingDriver()
	p, _ := newTestPublisher(t, d)
	ctx := context.Background()

	first, err := p.Publish(ctx, validEvent())
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || first.EventID != "evt-1" || first.DeliveredTo != 2 || len(first.Channels) != 2 {
		t.Fatalf("first = %+v", first)
	}
	second, err := p.Publish(ctx, validEvent())
	if err != nil {
		t.Fatal(err)
	}
	if !second.Duplicate || second.DeliveredTo != 0 || second.EventID != "evt-1" {
		t.Fatalf("second = %+v", second)
	}
	// The same id inside a batch is a duplicate too, and so is a repeat within the batch.
	e2 := validEvent()
	e2.ID = "evt-2"
	res, err := p.PublishBatch(ctx, []Event{validEvent(), e2, e2})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Outcome.Duplicate || res[1].Outcome.Duplicate || !res[2].Outcome.Duplicate {
		t.Fatalf("batch = %+v", res)
	}
	// And a batch-delivered id is a duplicate for Publish.
	again, err := p.Publish(ctx, e2)
	if err != nil || !again.Duplicate {
		t.Fatalf("again = %+v, %v", again, err)
	}
	if d.count("evt-1") != 1 || d.count("evt-2") != 1 {
		t.Fatalf("deliveries = %v", d.delivered)
	}
}

func TestPublishGeneratesIDs(t *testing.T) {
	d := newRecordingDriver()
	p, store := newTestPublisher(t, d)
	e := validEvent()
	e.ID = ""
	a, err := p.Publish(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Publish(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if a.EventID == "" || a.EventID == b.EventID || a.Duplicate || b.Duplicate {
		t.Fatalf("a=%+v b=%+v", a, b)
	}
	if n := store.Stats().Keys; n != 0 {
		t.Fatalf("generated ids were remembered: %d keys", n)
	}
}

func TestPublishFailureReleasesKey(t *testing.T) {
	d := newRecordingDriver()
	p, _ := newTestPublisher(t, d)
	ctx := context.Background()
	d.fail("evt-1", fmt.Errorf("%w: boom", ErrDeliveryFailed))
	if _, err := p.Publish(ctx, validEvent()); !errors.Is(err, ErrDeliveryFailed) {
		t.Fatalf("err = %v", err)
	}
	d.fail("evt-1", nil)
	out, err := p.Publish(ctx, validEvent())
	if err != nil || out.Duplicate || d.count("evt-1") != 1 {
		t.Fatalf("retry = %+v, %v, deliveries %d", out, err, d.count("evt-1"))
	}

	// Same in a batch: the failed event is released, the others are remembered.
	a, b := validEvent(), validEvent()
	a.ID, b.ID = "a", "b"
	d.fail("a", fmt.Errorf("%w: boom", ErrUnavailable))
	res, _ := p.PublishBatch(ctx, []Event{a, b})
	if !errors.Is(res[0].Err, ErrUnavailable) || res[1].Err != nil {
		t.Fatalf("batch = %+v", res)
	}
	d.fail("a", nil)
	res, _ = p.PublishBatch(ctx, []Event{a, b})
	if res[0].Err != nil || res[0].Outcome.Duplicate || !res[1].Outcome.Duplicate {
		t.Fatalf("batch retry = %+v", res)
	}
	if d.count("a") != 1 || d.count("b") != 1 {
		t.Fatalf("deliveries = %v", d.delivered)
	}
}

func TestPublishBatchOneBadEvent(t *testing.T) {
	d := newRecordingDriver()
	p, _ := newTestPublisher(t, d)
	good1, bad, good2 := validEvent(), validEvent(), validEvent()
	good1.ID, bad.ID, good2.ID = "g1", "bad", "g2"
	bad.Channels = []string{"ok", "not ok"}
	bad.Name = ""
	res, err := p.PublishBatch(context.Background(), []Event{good1, bad, good2})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[2].Err != nil || res[0].Outcome.DeliveredTo != 2 {
		t.Fatalf("good events failed: %+v", res)
	}
	var ve *ValidationError
	if !errors.As(res[1].Err, &ve) {
		t.Fatalf("bad event err = %v", res[1].Err)
	}
	if got := fmt.Sprint(fields(ve)); got != "[events[1].channels[1] events[1].name]" {
		t.Fatalf("violations = %s", got)
	}
	if d.count("bad") != 0 || d.count("g1") != 1 || d.count("g2") != 1 {
		t.Fatalf("deliveries = %v", d.delivered)
	}
	// The invalid event's id was not burnt.
	bad = validEvent()
	bad.ID = "bad"
	if out, err := p.Publish(context.Background(), bad); err != nil || out.Duplicate {
		t.Fatalf("fixed bad event = %+v, %v", out, err)
	}
}

func TestPublishBatchLimits(t *testing.T) {
	p := NewPublisher(newRecordingDriver(), withMaxBatchEvents(2))
	for _, n := range []int{0, 3} {
		_, err := p.PublishBatch(context.Background(), make([]Event, n))
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("batch of %d: err = %v, want ErrInvalid", n, err)
		}
	}
}

// TestPublishBatchDefaultLimit: without withMaxBatchEvents a batch may carry
// DefaultMaxBatchEvents events, the SendBatch bound of broadcast.proto.
func TestPublishBatchDefaultLimit(t *testing.T) {
	if DefaultMaxBatchEvents != 100 {
		t.Fatalf("DefaultMaxBatchEvents = %d, want 100 (SendBatchRequest carries up to 100 events)", DefaultMaxBatchEvents)
	}
	p := NewPublisher(newRecordingDriver())
	full := make([]Event, DefaultMaxBatchEvents)
	for i := range full {
		full[i] = validEvent()
		full[i].ID = fmt.Sprint("e", i)
	}
	results, err := p.PublishBatch(context.Background(), full)
	if err != nil {
		t.Fatalf("batch of %d: %v", len(full), err)
	}
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("event %d: %v", i, r.Err)
		}
	}
	if _, err := p.PublishBatch(context.Background(), append(full, validEvent())); !errors.Is(err, ErrInvalid) {
		t.Errorf("batch of %d: err = %v, want ErrInvalid", len(full)+1, err)
	}
}

func TestPublishConcurrentRepeatsDeliverOnce(t *testing.T) {
	d := newRecordingDriver()
	d.gate = make(chan struct{})
	p, _ := newTestPublisher(t, d)
	const n = 32
	var wg sync.WaitGroup
	var dups, ok atomic.Int64
	for i := 0; i < n; i++ {
		wg.Go(func() {
			var out Outcome
			var err error
			if i%2 == 0 {
				out, err = p.Publish(context.Background(), validEvent())
			} else {
				var res []BatchResult
				res, err = p.PublishBatch(context.Background(), []Event{validEvent()})
				if err == nil {
					out, err = res[0].Outcome, res[0].Err
				}
			}
			if err != nil {
				t.Error(err)
				return
			}
			if out.Duplicate {
				dups.Add(1)
			} else {
				ok.Add(1)
			}
		})
	}
	// Wait until exactly one caller is inside the driver, holding it there while all the
	// others answer; then let it finish.
	var opened sync.Once
	openGate := func() { opened.Do(func() { close(d.gate) }) }
	t.Cleanup(func() { openGate(); wg.Wait() }) // a failed wait must not leave callers blocked
	pushertest.Eventually(t, "every other caller answered as a duplicate", func() bool { return dups.Load() >= n-1 })
	openGate()
	wg.Wait()
	if ok.Load() != 1 || dups.Load() != n-1 || d.count("evt-1") != 1 || d.calls.Load() != 1 {
		t.Fatalf("ok=%d dups=%d deliveries=%d calls=%d", ok.Load(), dups.Load(), d.count("evt-1"), d.calls.Load())
	}
}

type failingStore struct{}

func (failingStore) Reserve(context.Context, string) (bool, error) {
	return false, errors.New("redis down")
}
func (failingStore) Release(context.Context, string) error { return nil }

func TestPublishStoreFailureIsUnavailable(t *testing.T) {
	d := newRecordingDriver()
	p := NewPublisher(d, WithIdempotencyStore(failingStore{}))
	if _, err := p.Publish(context.Background(), validEvent()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	res, err := p.PublishBatch(context.Background(), []Event{validEvent()})
	if err != nil || !errors.Is(res[0].Err, ErrUnavailable) {
		t.Fatalf("batch = %+v, %v", res, err)
	}
	if d.calls.Load() != 0 {
		t.Fatal("delivered without an idempotency answer")
	}
}

func TestPublishInvalidDoesNotReachDriver(t *testing.T) {
	d := newRecordingDriver()
	p, _ := newTestPublisher(t, d)
	e := validEvent()
	e.Channels = nil
	if _, err := p.Publish(context.Background(), e); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	if _, err := p.SendToUser(context.Background(), "", "n", "d"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SendToUser err = %v", err)
	}
	if d.calls.Load() != 0 {
		t.Fatal("invalid event reached the driver")
	}
}

func TestNewEventIDUnique(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		id := NewEventID()
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("id %q is not 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("id %q repeated", id)
		}
		seen[id] = true
	}
}

type countingObserver struct {
	mu                   sync.Mutex
	ok, dup, failed, all int
}

func (o *countingObserver) Published(out Outcome, err error, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all++
	switch {
	case err != nil:
		o.failed++
	case out.Duplicate:
		o.dup++
	default:
		o.ok++
	}
}

func TestObserverSeesEveryEvent(t *testing.T) {
	d := newRecordingDriver()
	store, _ := NewMemoryStore(MemoryStoreConfig{})
	obs := &countingObserver{}
	p := NewPublisher(d, WithIdempotencyStore(store), withObserver(obs))
	ctx := context.Background()
	for range 2 { // the second is a duplicate, which is not an error
		if _, err := p.Publish(ctx, validEvent()); err != nil {
			t.Fatal(err)
		}
	}
	bad := validEvent()
	bad.Name = ""
	e3 := validEvent()
	e3.ID = "e3"
	// The invalid event fails on its own result; the batch as a whole succeeds.
	if _, err := p.PublishBatch(ctx, []Event{validEvent(), bad, e3}); err != nil {
		t.Fatal(err)
	}
	if obs.all != 5 || obs.ok != 2 || obs.dup != 2 || obs.failed != 1 {
		t.Fatalf("observer = %+v", obs)
	}
}
