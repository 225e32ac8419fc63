package embedded

import (
	"context"
	"fmt"

	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/errcode"
	"github.com/milequest/pushercm/protocol"
)

// Name is the driver's name in health reports and configuration.
const Name = "embedded"

// Hub is what the driver needs from the in-process edge. *edge.Server implements it;
// tests may pass a fake.
type Hub interface {
	// Publish sends the event to every subscriber of the channels, encoding the frame
	// once per channel, and returns the number of connections it is queued for.
	Publish(ctx context.Context, m edge.Message) (delivered int, err error)
	// SendToUser sends the event to every connection signed in as userID.
	SendToUser(ctx context.Context, userID, event, data string) (delivered int, err error)
	Channels(ctx context.Context, prefix string) ([]edge.ChannelInfo, error)
	Channel(ctx context.Context, name string) (edge.ChannelInfo, error)
	PresenceMembers(ctx context.Context, channel string) ([]edge.Member, error)
}

// Config configures the embedded driver (the edge has its own Config).
type Config struct {
	// EncryptionMasterKey (32 bytes) makes the driver seal the data of events
	// on private-encrypted- channels, as Pusher's server SDKs do before they
	// publish, so that a gRPC publish reaches pusher-js readable and the
	// socket carries only ciphertext. Nil: data is forwarded untouched (the
	// caller must have encrypted it).
	EncryptionMasterKey []byte
}

// Validate implements the configuration contract.
func (c Config) Validate() error {
	if c.EncryptionMasterKey != nil && len(c.EncryptionMasterKey) != 32 {
		return fmt.Errorf("%w: %w", delivery.ErrConfig, protocol.ErrMasterKeySize)
	}
	return nil
}

// Driver delivers in-process to the edge's WebSocket connections: no HTTP hop, no
// per-subscriber encoding (the edge encodes once per channel). It is safe for concurrent
// use as long as the Hub is.
type Driver struct {
	hub       Hub
	masterKey []byte
}

// New returns a driver publishing to hub.
func New(cfg Config, hub Hub) (*Driver, error) {
	if hub == nil {
		return nil, fmt.Errorf("%w: embedded driver needs a hub", delivery.ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Driver{hub: hub, masterKey: cfg.EncryptionMasterKey}, nil
}

// Publish implements delivery.Driver. DeliveredTo is the number of connections the
// event is queued for (see edge.Server.Publish).
func (d *Driver) Publish(ctx context.Context, e delivery.Event) (delivery.Result, error) {
	if d.masterKey != nil && hasEncrypted(e.Channels) {
		return d.publishEncrypted(ctx, e)
	}
	n, err := d.hub.Publish(ctx, edge.Message{
		Channels:        e.Channels,
		Event:           e.Name,
		Data:            e.Data,
		ExcludeSocketID: e.ExcludeSocketID,
	})
	if err != nil {
		return delivery.Result{DeliveredTo: n}, mapError("publish", err)
	}
	return delivery.Result{DeliveredTo: n}, nil
}

func hasEncrypted(channels []string) bool {
	for _, ch := range channels {
		if kind, _ := protocol.KindOf(ch); kind == protocol.KindPrivateEncrypted {
			return true
		}
	}
	return false
}

// publishEncrypted publishes the plain channels together and each
// encrypted channel alone, sealed with its own key (each channel has its
// own shared secret, so one ciphertext cannot serve two).
func (d *Driver) publishEncrypted(ctx context.Context, e delivery.Event) (delivery.Result, error) {
	var plain []string
	total := 0
	for _, ch := range e.Channels {
		if kind, _ := protocol.KindOf(ch); kind != protocol.KindPrivateEncrypted {
			plain = append(plain, ch)
			continue
		}
		sealed, err := protocol.EncryptData(ch, d.masterKey, e.Data)
		if err != nil {
			return delivery.Result{DeliveredTo: total}, fmt.Errorf("%w: encrypt: %w", delivery.ErrDeliveryFailed, err)
		}
		n, err := d.hub.Publish(ctx, edge.Message{Channels: []string{ch}, Event: e.Name, Data: sealed, ExcludeSocketID: e.ExcludeSocketID})
		total += n
		if err != nil {
			return delivery.Result{DeliveredTo: total}, mapError("publish", err)
		}
	}
	if len(plain) > 0 {
		n, err := d.hub.Publish(ctx, edge.Message{Channels: plain, Event: e.Name, Data: e.Data, ExcludeSocketID: e.ExcludeSocketID})
		total += n
		if err != nil {
			return delivery.Result{DeliveredTo: total}, mapError("publish", err)
		}
	}
	return delivery.Result{DeliveredTo: total}, nil
}

// PublishBatch implements delivery.Driver: the events are published one after another in
// order (in-process publishing is a few microseconds; a goroutine per event would cost
// more than it saves). Publishing stops early only when ctx ends.
func (d *Driver) PublishBatch(ctx context.Context, events []delivery.Event) ([]delivery.Result, []error) {
	results := make([]delivery.Result, len(events))
	errs := make([]error, len(events))
	for i, e := range events {
		if err := ctx.Err(); err != nil {
			errs[i] = fmt.Errorf("%w: publish: %w", delivery.ErrDeliveryFailed, err)
			continue
		}
		results[i], errs[i] = d.Publish(ctx, e)
	}
	return results, errs
}

// SendToUser implements delivery.Driver through the edge's #server-to-user-{id} routing.
func (d *Driver) SendToUser(ctx context.Context, userID, name, data string) (delivery.Result, error) {
	n, err := d.hub.SendToUser(ctx, userID, name, data)
	if err != nil {
		return delivery.Result{DeliveredTo: n}, mapError("send_to_user", err)
	}
	return delivery.Result{DeliveredTo: n}, nil
}

// Channels implements delivery.Driver. Per-user #server-to-user- channels are internal
// plumbing and are not listed (delivery.Hidden).
func (d *Driver) Channels(ctx context.Context, prefix string) ([]delivery.ChannelInfo, error) {
	list, err := d.hub.Channels(ctx, prefix)
	if err != nil {
		return nil, mapError("channels", err)
	}
	out := make([]delivery.ChannelInfo, 0, len(list))
	for _, c := range list {
		if delivery.Hidden(c.Name) {
			continue
		}
		out = append(out, channelInfo(c))
	}
	return out, nil
}

// Channel implements delivery.Driver. An unoccupied channel is Occupied false, not an
// error, as in Pusher's HTTP API; so is a hidden #server-to-user- channel.
func (d *Driver) Channel(ctx context.Context, name string) (delivery.ChannelInfo, error) {
	if _, err := protocol.ParseChannel(name, 0); err != nil {
		return delivery.ChannelInfo{}, fmt.Errorf("%w: %w", delivery.ErrInvalid, err)
	}
	if delivery.Hidden(name) {
		return delivery.ChannelInfo{Name: name}, nil
	}
	c, err := d.hub.Channel(ctx, name)
	if errcode.Of(err) == errcode.NotFound {
		return delivery.ChannelInfo{Name: name}, nil
	}
	if err != nil {
		return delivery.ChannelInfo{}, mapError("channel", err)
	}
	return channelInfo(c), nil
}

// PresenceMembers implements delivery.Driver. An empty presence channel has no members
// (not an error); a non-presence channel is ErrInvalid.
func (d *Driver) PresenceMembers(ctx context.Context, channel string) ([]delivery.Member, error) {
	ch, err := protocol.ParseChannel(channel, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", delivery.ErrInvalid, err)
	}
	if !ch.IsPresence() {
		return nil, fmt.Errorf("%w: %q is not a presence channel", delivery.ErrInvalid, channel)
	}
	list, err := d.hub.PresenceMembers(ctx, channel)
	if errcode.Of(err) == errcode.NotFound {
		return []delivery.Member{}, nil
	}
	if err != nil {
		return nil, mapError("presence_members", err)
	}
	out := make([]delivery.Member, len(list))
	for i, m := range list {
		out[i] = delivery.Member{UserID: m.UserID, UserInfo: m.UserInfo}
	}
	return out, nil
}

// Health implements delivery.Driver. The embedded driver has no upstream and no breaker.
func (d *Driver) Health() delivery.Health {
	return delivery.Health{Driver: Name, Healthy: true}
}

func channelInfo(c edge.ChannelInfo) delivery.ChannelInfo {
	return delivery.ChannelInfo{
		Name:              c.Name,
		Occupied:          c.Occupied,
		SubscriptionCount: c.SubscriptionCount,
		UserCount:         c.UserCount,
	}
}

// mapError gives a hub error the delivery sentinel that the Driver contract asks for,
// chosen by its errcode.Code and keeping the hub error in the chain for logs. A limit
// refusing an event makes it an invalid request; an error without a code (a canceled
// context, say) is a failed delivery.
func mapError(op string, err error) error {
	sentinel := delivery.ErrDeliveryFailed
	switch errcode.Of(err) {
	case errcode.InvalidArgument, errcode.LimitExceeded:
		sentinel = delivery.ErrInvalid
	case errcode.NotFound:
		sentinel = delivery.ErrNotFound
	case errcode.ConnectionFailed:
		sentinel = delivery.ErrUnavailable
	}
	return fmt.Errorf("%w: %s: %w", sentinel, op, err)
}
