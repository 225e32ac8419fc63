package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// newUUID is a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Event is one event to publish.
type Event struct {
	// ID is the idempotency key; the helpers set a UUID when it is empty, so
	// that retries are safe. Reuse the same id to make a repeat a no-op.
	ID string
	// Channels receive the event: 1 to 100 names.
	Channels []string
	// Name is the event name (1 to 200 characters, not pusher:...).
	Name string
	// Data is sent to subscribers as-is. Ignored when JSON is set.
	Data string
	// JSON, when not nil, is encoded with encoding/json (structs with json
	// tags work) and sent as Data.
	JSON any
	// UserID is the user the event is about (per-user rate limit key).
	UserID string
	// ExcludeSocketID is a connection that must not receive the event.
	ExcludeSocketID string
	// OccurredAt is when it happened at the source; zero means unset.
	OccurredAt time.Time
}

// Result is what the server did with one event.
type Result struct {
	EventID     string
	DeliveredTo int64
	// Duplicate: the id was seen inside the idempotency window and the event
	// was not delivered again (also the answer to a retry of a send that
	// had in fact succeeded).
	Duplicate bool
}

func (c *Client) toProto(e *Event) (*pushercmv1.Event, error) {
	if e.ID == "" {
		e.ID = c.newID()
	}
	data, err := encode(e.Data, e.JSON)
	if err != nil {
		return nil, err
	}
	pe := &pushercmv1.Event{
		Id: e.ID, Channels: e.Channels, Name: e.Name,
		Payload: &pushercmv1.Event_Data{Data: data},
		UserId:  e.UserID, ExcludeSocketId: e.ExcludeSocketID,
	}
	if !e.OccurredAt.IsZero() {
		pe.OccurredAt = timestamppb.New(e.OccurredAt)
	}
	return pe, nil
}

func encode(data string, v any) (string, error) {
	if v == nil {
		return data, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("client: encoding JSON payload: %w", err)
	}
	return string(b), nil
}

// SendEvent publishes one event, retrying per the policy.
func (c *Client) SendEvent(ctx context.Context, e Event) (Result, error) {
	pe, err := c.toProto(&e)
	if err != nil {
		return Result{}, err
	}
	resp, err := c.bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: pe})
	if err != nil {
		return Result{EventID: e.ID}, err
	}
	return Result{EventID: resp.GetEventId(), DeliveredTo: resp.GetDeliveredTo(), Duplicate: resp.GetDuplicate()}, nil
}

// BatchResult is the outcome of one event of a batch: Err is nil or a status
// error built from the server's ItemError (codes, reason, field violations
// and retry delay as for a whole call).
type BatchResult struct {
	Result
	Err error
}

// SendBatch publishes up to 100 events and returns one result per event, in
// order. Events that fail with a retryable error (UNAVAILABLE, or
// RESOURCE_EXHAUSTED with a retry delay) are sent again, alone, per the
// policy; the others keep their first answer. The error is non-nil only when
// the batch as a whole failed.
func (c *Client) SendBatch(ctx context.Context, events []Event) ([]BatchResult, error) {
	req := &pushercmv1.SendBatchRequest{Events: make([]*pushercmv1.Event, len(events))}
	for i := range events {
		e := events[i]
		pe, err := c.toProto(&e)
		if err != nil {
			return nil, fmt.Errorf("events[%d]: %w", i, err)
		}
		req.Events[i] = pe
	}
	out := make([]BatchResult, len(events))
	pending := make([]int, len(events)) // request index of each event sent
	for i := range pending {
		pending[i] = i
	}
	for n := 1; ; n++ {
		resp, err := c.bc.SendBatch(ctx, req)
		if err != nil {
			if n == 1 {
				return nil, err
			}
			// A retry of the failed rest failed as a whole: those events
			// keep the error.
			for _, i := range pending {
				out[i].Err = err
			}
			return out, nil
		}
		var again []int
		var wait time.Duration
		for j, r := range resp.GetResults() {
			if j >= len(pending) {
				break
			}
			i := pending[j]
			if ie := r.GetError(); ie != nil {
				out[i] = BatchResult{Result: Result{EventID: req.Events[j].GetId()}, Err: itemStatus(ie)}
				d, ok := c.retry.delay(n, codes.Code(ie.GetCode()), time.Duration(ie.GetRetryAfterMs())*time.Millisecond)
				if ok {
					again = append(again, j)
					wait = max(wait, d)
				}
				continue
			}
			sr := r.GetResponse()
			out[i] = BatchResult{Result: Result{EventID: sr.GetEventId(), DeliveredTo: sr.GetDeliveredTo(), Duplicate: sr.GetDuplicate()}}
		}
		if len(again) == 0 || n >= c.retry.MaxAttempts || !sleep(ctx, wait) {
			return out, nil
		}
		next := &pushercmv1.SendBatchRequest{Events: make([]*pushercmv1.Event, len(again))}
		nextPending := make([]int, len(again))
		for k, j := range again {
			next.Events[k] = req.Events[j]
			nextPending[k] = pending[j]
		}
		req, pending = next, nextPending
	}
}

// itemStatus rebuilds a status error from a batch item's error.
func itemStatus(ie *pushercmv1.ItemError) error {
	st := status.New(codes.Code(ie.GetCode()), ie.GetMessage())
	var details []protoadapt.MessageV1
	details = append(details, &errdetails.ErrorInfo{Reason: ie.GetReason(), Domain: "pushercm", Metadata: ie.GetMetadata()})
	if ms := ie.GetRetryAfterMs(); ms > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(ms) * time.Millisecond)})
	}
	if fv := ie.GetFieldViolations(); len(fv) > 0 {
		br := &errdetails.BadRequest{}
		for _, v := range fv {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
		}
		details = append(details, br)
	}
	if withD, err := st.WithDetails(details...); err == nil {
		return withD.Err()
	}
	return st.Err()
}

// UserEvent is one event for every connection signed in as a user.
type UserEvent struct {
	// ID is the idempotency key; a UUID is set when empty.
	ID     string
	UserID string
	Name   string
	// Data is sent as-is unless JSON is set.
	Data string
	// JSON, when not nil, is encoded with encoding/json and sent as Data.
	JSON any
}

// SendToUser publishes one event to every connection signed in as
// e.UserID (the #server-to-user-{id} channel), retrying per the policy.
func (c *Client) SendToUser(ctx context.Context, e UserEvent) (Result, error) {
	if e.ID == "" {
		e.ID = c.newID()
	}
	data, err := encode(e.Data, e.JSON)
	if err != nil {
		return Result{}, err
	}
	resp, err := c.bc.SendToUser(ctx, &pushercmv1.SendToUserRequest{
		Id: e.ID, UserId: e.UserID, Name: e.Name, Payload: &pushercmv1.SendToUserRequest_Data{Data: data},
	})
	if err != nil {
		return Result{EventID: e.ID}, err
	}
	return Result{EventID: resp.GetEventId(), DeliveredTo: resp.GetDeliveredTo(), Duplicate: resp.GetDuplicate()}, nil
}

// Reason is the ErrorInfo reason of err (AUTHENTICATION_FAILED,
// RATE_LIMITED, INVALID_ARGUMENT...), or "".
func Reason(err error) string { return errorInfo(err).GetReason() }

func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// FieldViolation names an invalid request field.
type FieldViolation struct{ Field, Description string }

// FieldViolations are the BadRequest violations of an INVALID_ARGUMENT error.
func FieldViolations(err error) []FieldViolation {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	var out []FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, FieldViolation{v.GetField(), v.GetDescription()})
			}
		}
	}
	return out
}
