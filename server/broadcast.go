package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/milequest/pushercm/delivery"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/interceptors"
)

// Publisher is what BroadcastService needs from delivery; *delivery.Publisher
// implements it.
type Publisher interface {
	Publish(ctx context.Context, e delivery.Event) (delivery.Outcome, error)
	PublishBatch(ctx context.Context, events []delivery.Event) ([]delivery.BatchResult, error)
	SendToUserOnce(ctx context.Context, id, userID, name, data string) (delivery.Outcome, error)
}

// Broadcast implements pushercm.v1.BroadcastService on a Publisher. It only
// translates: validation, idempotency and delivery are the Publisher's, and
// errors are returned as domain errors for the interceptor to map.
type Broadcast struct {
	pushercmv1.UnimplementedBroadcastServiceServer

	Publisher Publisher
	// Log receives internal causes of failed batch items, which (unlike
	// whole-call errors) never pass through the error interceptor's log.
	// Nil means slog.Default().
	Log *slog.Logger
}

// Span attribute keys set on the RPC's span (the server span the
// interceptor chain starts, telemetry.ServerCalls).
const (
	attrChannels  = "pushercm.channels.count"
	attrEventSize = "pushercm.event.size"
	attrDelivered = "pushercm.delivered_to"
	attrDuplicate = "pushercm.duplicate"
	attrBatchSize = "pushercm.batch.size"
	attrFailed    = "pushercm.batch.failed"
)

// SendEvent implements BroadcastService.SendEvent.
func (b *Broadcast) SendEvent(ctx context.Context, req *pushercmv1.SendEventRequest) (*pushercmv1.SendEventResponse, error) {
	if req.GetEvent() == nil {
		return nil, interceptors.InvalidField("event", "is required")
	}
	e, usedJSON, err := toEvent(req.GetEvent(), -1)
	if err != nil {
		return nil, err
	}
	span := trace.SpanFromContext(ctx)
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(attribute.Int(attrChannels, len(e.Channels)), attribute.Int(attrEventSize, len(e.Data)))
	}
	out, err := b.Publisher.Publish(ctx, e)
	if err != nil {
		return nil, payloadField(err, usedJSON, "event.data", "event.json")
	}
	if recording {
		span.SetAttributes(attribute.Int(attrDelivered, out.DeliveredTo), attribute.Bool(attrDuplicate, out.Duplicate))
	}
	return toResponse(out), nil
}

// SendBatch implements BroadcastService.SendBatch: one result per event, in
// request order. Only whole-request problems fail the call.
func (b *Broadcast) SendBatch(ctx context.Context, req *pushercmv1.SendBatchRequest) (*pushercmv1.SendBatchResponse, error) {
	n := len(req.GetEvents())
	const limit = delivery.DefaultMaxBatchEvents
	switch {
	case n == 0:
		return nil, interceptors.InvalidField("events", "at least one event is required")
	case n > limit:
		return nil, interceptors.InvalidField("events", fmt.Sprintf("at most %d events per batch, got %d", limit, n))
	}

	results := make([]*pushercmv1.SendBatchResult, n)
	events := make([]delivery.Event, 0, n)
	index := make([]int, 0, n) // events[j] is request event index[j]
	usedJSON := make([]bool, n)
	size := 0
	for i, pe := range req.GetEvents() {
		if pe == nil {
			results[i] = b.itemError(ctx, i, interceptors.InvalidField(eventPath(i), "is required"))
			continue
		}
		e, isJSON, err := toEvent(pe, i)
		if err != nil {
			results[i] = b.itemError(ctx, i, err)
			continue
		}
		usedJSON[i] = isJSON
		size += len(e.Data)
		events = append(events, e)
		index = append(index, i)
	}

	span := trace.SpanFromContext(ctx)
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(attribute.Int(attrBatchSize, n), attribute.Int(attrEventSize, size))
	}
	delivered, failed := 0, n-len(events)
	if len(events) > 0 {
		outs, err := b.Publisher.PublishBatch(ctx, events)
		if err != nil {
			return nil, err
		}
		for j, i := range index {
			if j >= len(outs) {
				failed++
				results[i] = b.itemError(ctx, i, fmt.Errorf("%w: no result for the event", delivery.ErrDeliveryFailed))
				continue
			}
			if err := outs[j].Err; err != nil {
				failed++
				// The Publisher roots paths at its own slice index; give
				// them the request's.
				err = reroot(err, "events["+strconv.Itoa(j)+"]", "events["+strconv.Itoa(i)+"]")
				prefix := "events[" + strconv.Itoa(i) + "]"
				err = payloadField(err, usedJSON[i], prefix+".data", prefix+".json")
				results[i] = b.itemError(ctx, i, err)
				continue
			}
			delivered += outs[j].Outcome.DeliveredTo
			results[i] = &pushercmv1.SendBatchResult{Index: int32(i), Response: toResponse(outs[j].Outcome)}
		}
	}
	if recording {
		span.SetAttributes(attribute.Int(attrDelivered, delivered), attribute.Int(attrFailed, failed))
	}
	return &pushercmv1.SendBatchResponse{Results: results}, nil
}

// SendToUser implements BroadcastService.SendToUser.
func (b *Broadcast) SendToUser(ctx context.Context, req *pushercmv1.SendToUserRequest) (*pushercmv1.SendToUserResponse, error) {
	data, usedJSON, problem := payload(req.GetData(), req.GetJson(), isJSON(req))
	if problem != "" {
		return nil, interceptors.InvalidField("json", problem)
	}
	span := trace.SpanFromContext(ctx)
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(attribute.Int(attrChannels, 1), attribute.Int(attrEventSize, len(data)))
	}
	out, err := b.Publisher.SendToUserOnce(ctx, req.GetId(), req.GetUserId(), req.GetName(), data)
	if err != nil {
		return nil, payloadField(err, usedJSON, "data", "json")
	}
	if recording {
		span.SetAttributes(attribute.Int(attrDelivered, out.DeliveredTo), attribute.Bool(attrDuplicate, out.Duplicate))
	}
	return &pushercmv1.SendToUserResponse{EventId: out.EventID, DeliveredTo: int64(out.DeliveredTo), Duplicate: out.Duplicate}, nil
}

func isJSON(req *pushercmv1.SendToUserRequest) bool {
	_, ok := req.GetPayload().(*pushercmv1.SendToUserRequest_Json)
	return ok
}

// eventPath is the request path of an event: "event" (SendEvent, i < 0) or
// "events[i]" (SendBatch). Paths are built only for errors: they cost an
// allocation that the hot path does not need.
func eventPath(i int) string {
	if i < 0 {
		return "event"
	}
	return "events[" + strconv.Itoa(i) + "]"
}

// toEvent converts a proto event; errors name fields under eventPath(i).
func toEvent(pe *pushercmv1.Event, i int) (delivery.Event, bool, error) {
	_, jsonSet := pe.GetPayload().(*pushercmv1.Event_Json)
	data, usedJSON, problem := payload(pe.GetData(), pe.GetJson(), jsonSet)
	if problem != "" {
		return delivery.Event{}, false, interceptors.InvalidField(eventPath(i)+".json", problem)
	}
	e := delivery.Event{
		ID:              pe.GetId(),
		Channels:        pe.GetChannels(),
		Name:            pe.GetName(),
		Data:            data,
		UserID:          pe.GetUserId(),
		ExcludeSocketID: pe.GetExcludeSocketId(),
	}
	if ts := pe.GetOccurredAt(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return delivery.Event{}, false, interceptors.InvalidField(eventPath(i)+".occurred_at", "is not a valid timestamp")
		}
		e.OccurredAt = ts.AsTime()
	}
	return e, usedJSON, nil
}

// payload returns the event data: `data` as-is, or `json` encoded once. A
// non-empty problem is why `json` cannot be used; the caller names the field.
func payload(data string, v *structpb.Value, jsonSet bool) (out string, usedJSON bool, problem string) {
	if !jsonSet {
		return data, false, ""
	}
	if v == nil || v.GetKind() == nil {
		return "", true, "must hold a JSON value"
	}
	b, err := protojson.Marshal(v)
	if err != nil {
		return "", true, "cannot be encoded as JSON: " + err.Error()
	}
	return string(b), true, ""
}

// payloadField renames the payload's field in validation errors when the
// caller sent `json`: delivery only knows the encoded `data`.
func payloadField(err error, usedJSON bool, from, to string) error {
	if !usedJSON {
		return err
	}
	return reroot(err, from, to)
}

func reroot(err error, from, to string) error {
	if from == to {
		return err
	}
	var ve *delivery.ValidationError
	if errors.As(err, &ve) {
		return ve.WithPrefix(from, to)
	}
	return err
}

func toResponse(o delivery.Outcome) *pushercmv1.SendEventResponse {
	return &pushercmv1.SendEventResponse{
		EventId:     o.EventID,
		DeliveredTo: int64(o.DeliveredTo),
		Duplicate:   o.Duplicate,
		Channels:    o.Channels,
	}
}

// itemError builds a batch item's error from the same mapping as whole-call
// errors, flattened into ItemError.
func (b *Broadcast) itemError(ctx context.Context, i int, err error) *pushercmv1.SendBatchResult {
	m := interceptors.Map(err)
	if m.Internal {
		log := b.Log
		if log == nil {
			log = slog.Default()
		}
		log.LogAttrs(ctx, slog.LevelError, "batch event failed", slog.Int("index", i),
			slog.String("reason", m.Reason), slog.String("error", err.Error()))
	}
	return &pushercmv1.SendBatchResult{Index: int32(i), Error: ItemError(m)}
}

// ItemError flattens a mapped status (ErrorInfo, RetryInfo, BadRequest) into
// the API's ItemError.
func ItemError(m interceptors.Mapped) *pushercmv1.ItemError {
	st := m.Status
	ie := &pushercmv1.ItemError{Code: int32(st.Code()), Message: st.Message(), Reason: m.Reason}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			ie.Reason = d.GetReason()
			if len(d.GetMetadata()) > 0 {
				ie.Metadata = d.GetMetadata()
			}
		case *errdetails.RetryInfo:
			ie.RetryAfterMs = d.GetRetryDelay().AsDuration().Milliseconds()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				ie.FieldViolations = append(ie.FieldViolations, &pushercmv1.FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	return ie
}
