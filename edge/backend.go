package edge

import (
	"context"
	"time"

	"github.com/milequest/pushercm/edge/httpapi"
)

// apiBackend adapts the in-process API to edge/httpapi.Backend.
type apiBackend struct{ s *Server }

func (b apiBackend) Publish(ctx context.Context, m httpapi.Message) (int, error) {
	n, err := b.s.Publish(ctx, Message(m))
	return n, err
}

func (b apiBackend) SendToUser(ctx context.Context, userID, event, data string) (int, error) {
	n, err := b.s.SendToUser(ctx, userID, event, data)
	return n, err
}

func toAPIChannel(ci ChannelInfo, now time.Time) httpapi.ChannelInfo {
	out := httpapi.ChannelInfo{Name: ci.Name, Occupied: ci.Occupied, SubscriptionCount: ci.SubscriptionCount, UserCount: ci.UserCount}
	if ci.Cache != nil {
		out.Cache = &httpapi.CachedEvent{Event: ci.Cache.Event, Data: ci.Cache.Data, TTL: ci.Cache.ExpiresAt.Sub(now)}
	}
	return out
}

func (b apiBackend) Channels(ctx context.Context, prefix string) ([]httpapi.ChannelInfo, error) {
	now := b.s.opts.now()
	list, err := b.s.Channels(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]httpapi.ChannelInfo, len(list))
	for i, ci := range list {
		out[i] = toAPIChannel(ci, now)
	}
	return out, nil
}

func (b apiBackend) Channel(ctx context.Context, name string) (httpapi.ChannelInfo, error) {
	ci, err := b.s.Channel(ctx, name)
	if err != nil {
		return httpapi.ChannelInfo{}, err
	}
	return toAPIChannel(ci, b.s.opts.now()), nil
}

func (b apiBackend) PresenceMembers(ctx context.Context, channel string) ([]httpapi.Member, error) {
	ms, err := b.s.PresenceMembers(ctx, channel)
	if err != nil {
		return nil, err
	}
	out := make([]httpapi.Member, len(ms))
	for i, m := range ms {
		out[i] = httpapi.Member(m)
	}
	return out, nil
}

func (b apiBackend) TerminateUser(ctx context.Context, userID string) (int, error) {
	return b.s.TerminateUser(ctx, userID)
}
