package protocol

import (
	"fmt"
)

// Webhook event names (§6).
const (
	WebhookChannelOccupied   = "channel_occupied"
	WebhookChannelVacated    = "channel_vacated"
	WebhookMemberAdded       = "member_added"
	WebhookMemberRemoved     = "member_removed"
	WebhookClientEvent       = "client_event"
	WebhookCacheMiss         = "cache_miss"
	WebhookSubscriptionCount = "subscription_count"
)

// Webhook HTTP headers.
const (
	WebhookHeaderKey       = "X-Pusher-Key"
	WebhookHeaderSignature = "X-Pusher-Signature"
	// WebhookContentType must be exact: the npm SDK compares it strictly.
	WebhookContentType = "application/json"
)

// WebhookEvent is one entry of a webhook body. Every field is a string because
// pusher-http-go decodes them into strings (data and user_id included).
type WebhookEvent struct {
	Name              string `json:"name"`
	Channel           string `json:"channel,omitempty"`
	Event             string `json:"event,omitempty"`
	Data              string `json:"data,omitempty"`
	SocketID          string `json:"socket_id,omitempty"`
	UserID            string `json:"user_id,omitempty"`
	SubscriptionCount *int   `json:"subscription_count,omitempty"`
}

// WebhookBody is the JSON document POSTed to webhook URLs.
type WebhookBody struct {
	TimeMs int64          `json:"time_ms"`
	Events []WebhookEvent `json:"events"`
}

// WebhookSignature is hex(HMAC-SHA256(secret, raw body)).
func WebhookSignature(secret string, body []byte) string {
	return Sign(secret, string(body))
}

// VerifyWebhook checks the X-Pusher-Key and X-Pusher-Signature header values of a webhook.
func VerifyWebhook(key, secret, headerKey, headerSignature string, body []byte) error {
	if subtle(headerKey, key) != 1 {
		return fmt.Errorf("%w: webhook key %q", ErrAuthKey, headerKey)
	}
	if !VerifySignature(secret, string(body), headerSignature) {
		return fmt.Errorf("%w: webhook", ErrSignature)
	}
	return nil
}
