package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// SendToUserOnce is SendToUser with the idempotency of Publish: id is the event's key
// (generated when empty, and then never a duplicate); a repeat inside the window answers
// Duplicate without delivering, and a failed delivery releases the key so that a retry
// delivers. Validation errors name the request's fields (id, user_id, name, data).
func (p *Publisher) SendToUserOnce(ctx context.Context, id, userID, name, data string) (Outcome, error) {
	if p.obs == nil {
		return p.sendToUserOnce(ctx, id, userID, name, data)
	}
	start := time.Now()
	out, err := p.sendToUserOnce(ctx, id, userID, name, data)
	p.obs.Published(out, err, time.Since(start))
	return out, err
}

func (p *Publisher) sendToUserOnce(ctx context.Context, id, userID, name, data string) (Outcome, error) {
	ctx, span := p.tracer.Start(ctx, "delivery.SendToUser", trace.WithAttributes(
		attribute.Int("pushercm.event.size", len(data)),
	))
	defer span.End()

	generated := id == ""
	if generated {
		id = p.newID()
	}
	err := ValidateSendToUser(userID, name, data, p.limits)
	if len(id) > MaxEventIDLength {
		idv := FieldViolation{Field: "id", Description: fmt.Sprintf("must be at most %d bytes, got %d", MaxEventIDLength, len(id))}
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.Violations = append([]FieldViolation{idv}, ve.Violations...)
		} else {
			err = &ValidationError{Violations: []FieldViolation{idv}}
		}
	}
	if err != nil {
		return Outcome{}, spanError(span, err)
	}
	if !generated {
		reserved, err := p.reserve(ctx, id)
		if err != nil {
			return Outcome{}, spanError(span, err)
		}
		if !reserved {
			if span.IsRecording() {
				span.SetAttributes(attribute.Bool("pushercm.duplicate", true))
			}
			return Outcome{EventID: id, Duplicate: true}, nil
		}
	}
	res, err := p.driver.SendToUser(ctx, userID, name, data)
	if err != nil {
		if !generated {
			p.release(ctx, id)
		}
		return Outcome{}, spanError(span, err)
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("pushercm.delivered_to", res.DeliveredTo))
	}
	return Outcome{EventID: id, DeliveredTo: res.DeliveredTo}, nil
}
