package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/milequest/pushercm/protocol"
)

const instrumentationName = "github.com/milequest/pushercm/delivery"

// DefaultMaxBatchEvents bounds one PublishBatch call, and so one SendBatch request
// (broadcast.proto: "up to 100 events"). Drivers split further as their upstream
// requires (Pusher: 10 events per request).
const DefaultMaxBatchEvents = 100

// Publisher composes validation, idempotency and a Driver. It is what the gRPC
// BroadcastService calls. It is safe for concurrent use.
type Publisher struct {
	driver   Driver
	store    IdempotencyStore
	limits   protocol.Limits
	maxBatch int
	newID    func() string
	tracer   trace.Tracer
	obs      observer
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher)

// WithIdempotencyStore sets the store of event ids. Without it (or with nil) ids are not
// remembered and every call delivers.
func WithIdempotencyStore(s IdempotencyStore) PublisherOption {
	return func(p *Publisher) { p.store = s }
}

// WithLimits overrides Pusher's default limits (zero fields keep the defaults).
func WithLimits(l protocol.Limits) PublisherOption {
	return func(p *Publisher) { p.limits = l.WithDefaults() }
}

// withMaxBatchEvents bounds the events of one PublishBatch (default DefaultMaxBatchEvents).
func withMaxBatchEvents(n int) PublisherOption {
	return func(p *Publisher) {
		if n > 0 {
			p.maxBatch = n
		}
	}
}

// WithIDGenerator replaces the event id generator (tests).
func WithIDGenerator(f func() string) PublisherOption {
	return func(p *Publisher) { p.newID = f }
}

// observer is told the outcome of every event, for metrics. It must be quick and safe
// for concurrent use.
type observer interface {
	// Published is called once per event (Publish, and each event of PublishBatch) with
	// its outcome or error; d is the duration of the call that carried it (for a batch,
	// the whole batch). Duplicates have Outcome.Duplicate set and no error.
	Published(o Outcome, err error, d time.Duration)
}

// withObserver sets an observer (nil: none).
func withObserver(o observer) PublisherOption {
	return func(p *Publisher) { p.obs = o }
}

// WithTracerProvider sets the tracer provider (default: the global one).
func WithTracerProvider(tp trace.TracerProvider) PublisherOption {
	return func(p *Publisher) { p.tracer = tp.Tracer(instrumentationName) }
}

// NewPublisher returns a Publisher delivering through d.
func NewPublisher(d Driver, opts ...PublisherOption) *Publisher {
	p := &Publisher{
		driver:   d,
		limits:   protocol.DefaultLimits(),
		maxBatch: DefaultMaxBatchEvents,
		newID:    NewEventID,
		tracer:   otel.Tracer(instrumentationName),
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// NewEventID returns a random 128-bit id as 32 hex digits. It draws from math/rand/v2's
// ChaCha8 generator (seeded by the runtime from the OS): ids must be unique, not secret,
// and crypto/rand costs a getrandom system call per id on the publish hot path.
func NewEventID() string {
	var b [32]byte
	const hexdigits = "0123456789abcdef"
	for half := 0; half < 2; half++ {
		v := rand.Uint64()
		for i := 0; i < 16; i++ {
			b[half*16+i] = hexdigits[v&0xf]
			v >>= 4
		}
	}
	return string(b[:])
}

// Publish validates e, skips it when its id is a duplicate inside the idempotency window,
// and delivers it otherwise. Errors: *ValidationError (ErrInvalid), ErrUnavailable (also
// when the idempotency store fails), and the driver's errors. When delivery fails the id
// is released, so retrying the same event delivers it.
func (p *Publisher) Publish(ctx context.Context, e Event) (Outcome, error) {
	if p.obs == nil {
		return p.publish(ctx, e)
	}
	start := time.Now()
	out, err := p.publish(ctx, e)
	p.obs.Published(out, err, time.Since(start))
	return out, err
}

func (p *Publisher) publish(ctx context.Context, e Event) (Outcome, error) {
	ctx, span := p.tracer.Start(ctx, "delivery.Publish")
	defer span.End()
	// Attributes are built only for recorded spans: this is the hot path.
	recording := span.IsRecording()

	e, generated := p.prepare(e)
	if recording {
		span.SetAttributes(
			attribute.Int("pushercm.channels.count", len(e.Channels)),
			attribute.Int("pushercm.event.size", len(e.Data)),
			attribute.String("pushercm.event.id", e.ID),
		)
	}
	if err := validateEvent(&e, p.limits); err != nil {
		return Outcome{}, spanError(span, err)
	}
	if !generated {
		reserved, err := p.reserve(ctx, e.ID)
		if err != nil {
			return Outcome{}, spanError(span, err)
		}
		if !reserved {
			if recording {
				span.SetAttributes(attribute.Bool("pushercm.duplicate", true))
			}
			return Outcome{EventID: e.ID, Duplicate: true, Channels: e.Channels}, nil
		}
	}
	res, err := p.driver.Publish(ctx, e)
	if err != nil {
		if !generated {
			p.release(ctx, e.ID)
		}
		return Outcome{}, spanError(span, err)
	}
	if recording {
		span.SetAttributes(attribute.Int("pushercm.delivered_to", res.DeliveredTo))
	}
	return Outcome{EventID: e.ID, DeliveredTo: res.DeliveredTo, Channels: e.Channels}, nil
}

// BatchResult is the outcome of one event of a batch: Err is nil or the event's own error
// (a *ValidationError has paths rooted at "events[i]").
type BatchResult struct {
	Outcome Outcome
	Err     error
}

// PublishBatch publishes every event independently; results[i] belongs to events[i].
// Invalid events and duplicates (also repeats inside the same batch) are answered
// without reaching the driver; the rest go to the driver in one PublishBatch call. The
// returned error is non-nil only for a batch that is refused as a whole (too many
// events, ErrInvalid).
func (p *Publisher) PublishBatch(ctx context.Context, events []Event) ([]BatchResult, error) {
	if p.obs == nil {
		return p.publishBatch(ctx, events)
	}
	start := time.Now()
	results, err := p.publishBatch(ctx, events)
	d := time.Since(start)
	for _, r := range results {
		p.obs.Published(r.Outcome, r.Err, d)
	}
	return results, err
}

func (p *Publisher) publishBatch(ctx context.Context, events []Event) ([]BatchResult, error) {
	ctx, span := p.tracer.Start(ctx, "delivery.PublishBatch", trace.WithAttributes(
		attribute.Int("pushercm.batch.size", len(events)),
	))
	defer span.End()
	if len(events) == 0 {
		return nil, spanError(span, &ValidationError{Violations: []FieldViolation{{"events", "at least one event is required"}}})
	}
	if len(events) > p.maxBatch {
		return nil, spanError(span, &ValidationError{Violations: []FieldViolation{{"events", fmt.Sprintf("at most %d events per batch, got %d", p.maxBatch, len(events))}}})
	}

	results := make([]BatchResult, len(events))
	pending := make([]Event, 0, len(events))
	pendingIdx := make([]int, 0, len(events))
	reservedKey := make([]bool, len(events))
	for i, e := range events {
		e, generated := p.prepare(e)
		if err := validateEvent(&e, p.limits); err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				err = ve.WithPrefix("event", fmt.Sprintf("events[%d]", i))
			}
			results[i].Err = err
			continue
		}
		if !generated {
			reserved, err := p.reserve(ctx, e.ID)
			if err != nil {
				results[i].Err = err
				continue
			}
			if !reserved {
				results[i].Outcome = Outcome{EventID: e.ID, Duplicate: true, Channels: e.Channels}
				continue
			}
			reservedKey[i] = true
		}
		pending = append(pending, e)
		pendingIdx = append(pendingIdx, i)
	}

	delivered, failed := 0, 0
	if len(pending) > 0 {
		res, errs := p.driver.PublishBatch(ctx, pending)
		for j, i := range pendingIdx {
			var err error
			if j < len(errs) {
				err = errs[j]
			}
			if j >= len(res) && err == nil {
				err = fmt.Errorf("%w: driver returned no result", ErrDeliveryFailed)
			}
			if err != nil {
				failed++
				if reservedKey[i] {
					p.release(ctx, pending[j].ID)
				}
				results[i].Err = err
				continue
			}
			delivered += res[j].DeliveredTo
			results[i].Outcome = Outcome{EventID: pending[j].ID, DeliveredTo: res[j].DeliveredTo, Channels: pending[j].Channels}
		}
	}
	span.SetAttributes(
		attribute.Int("pushercm.delivered_to", delivered),
		attribute.Int("pushercm.batch.failed", failed),
	)
	return results, nil
}

// SendToUser validates and delivers one event to every connection of userID.
func (p *Publisher) SendToUser(ctx context.Context, userID, name, data string) (Result, error) {
	ctx, span := p.tracer.Start(ctx, "delivery.SendToUser", trace.WithAttributes(
		attribute.Int("pushercm.event.size", len(data)),
	))
	defer span.End()
	if err := ValidateSendToUser(userID, name, data, p.limits); err != nil {
		return Result{}, spanError(span, err)
	}
	res, err := p.driver.SendToUser(ctx, userID, name, data)
	if err != nil {
		return Result{}, spanError(span, err)
	}
	span.SetAttributes(attribute.Int("pushercm.delivered_to", res.DeliveredTo))
	return res, nil
}

func (p *Publisher) prepare(e Event) (Event, bool) {
	generated := e.ID == ""
	if generated {
		e.ID = p.newID()
	}
	return e, generated
}

func (p *Publisher) reserve(ctx context.Context, id string) (bool, error) {
	if p.store == nil {
		return true, nil
	}
	ok, err := p.store.Reserve(ctx, id)
	if err != nil {
		// Delivering without the key could deliver twice; refusing is the safe side.
		return false, fmt.Errorf("%w: idempotency store: %w", ErrUnavailable, err)
	}
	return ok, nil
}

func (p *Publisher) release(ctx context.Context, id string) {
	if p.store == nil {
		return
	}
	// The caller's context may be the reason delivery failed; releasing must still
	// happen, or a retry within the window would be refused as a duplicate.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = p.store.Release(rctx, id) // best effort: the key expires after the window anyway
}

func spanError(span trace.Span, err error) error {
	if !span.IsRecording() {
		return err
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	return err
}
