package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// ChannelAuthRequest asks pushercm to sign a pusher-js channel
// subscription: what a web app's auth endpoint receives from pusher-js
// (socket_id, channel_name) plus the signed-in user's token.
type ChannelAuthRequest struct {
	// SocketID is pusher-js's socket_id form value, like "123.456".
	SocketID string
	// Channel is the channel_name form value, like "presence-team-42".
	Channel string
	// UserToken is the user's JWT (not the service token); not needed for
	// public channels.
	UserToken string
	// UserInfo is optional presence user_info, merged over the token's name.
	UserInfo map[string]any
}

// ChannelAuth is a signed subscription.
type ChannelAuth struct {
	// Auth is "app_key:signature"; empty for public channels.
	Auth string
	// ChannelData is the signed presence member (presence channels only).
	ChannelData string
	// SharedSecret is the channel's key (private-encrypted- channels only).
	SharedSecret string
	// UserID is the token's user.
	UserID string
	// Permissions the deciding rule grants (subscribe, client-events...).
	Permissions []string
	// MatchedRule names the rule that allowed the channel.
	MatchedRule string
}

// PusherJS is the JSON object pusher-js expects from a channel
// authorization endpoint: auth, plus channel_data and shared_secret when
// set.
func (a ChannelAuth) PusherJS() map[string]string {
	out := map[string]string{"auth": a.Auth}
	if a.ChannelData != "" {
		out["channel_data"] = a.ChannelData
	}
	if a.SharedSecret != "" {
		out["shared_secret"] = a.SharedSecret
	}
	return out
}

// AuthorizeChannel asks AuthService whether the user may subscribe to the
// channel and returns the signature (the client's token needs the
// channels:authorize scope). A refusal is a status error: PERMISSION_DENIED
// with reason AUTHORIZATION_FAILED and the deciding rule in Metadata
// ("rule"), UNAUTHENTICATED for a missing, bad or expired user token,
// INVALID_ARGUMENT with FieldViolations. The status message says why in
// words and is safe to show the user. UNAVAILABLE is retried per the
// policy: a signature can be asked for twice.
func (c *Client) AuthorizeChannel(ctx context.Context, req ChannelAuthRequest) (ChannelAuth, error) {
	info, err := toStruct(req.UserInfo)
	if err != nil {
		return ChannelAuth{}, err
	}
	resp, err := c.auth.AuthorizeChannel(ctx, &pushercmv1.AuthorizeChannelRequest{
		SocketId: req.SocketID, ChannelName: req.Channel, Token: req.UserToken, UserInfo: info,
	})
	if err != nil {
		return ChannelAuth{}, err
	}
	return ChannelAuth{
		Auth: resp.GetAuth(), ChannelData: resp.GetChannelData(), SharedSecret: resp.GetSharedSecret(),
		UserID: resp.GetUserId(), Permissions: resp.GetPermissions(), MatchedRule: resp.GetMatchedRule(),
	}, nil
}

// UserAuthRequest asks pushercm to sign a pusher-js user sign-in
// (pusher.signin()).
type UserAuthRequest struct {
	// SocketID is pusher-js's socket_id form value.
	SocketID string
	// UserToken is the user's JWT; its subject becomes the user id.
	UserToken string
	// UserInfo is optional user_info, merged over the token's name.
	UserInfo map[string]any
	// Watchlist is the user ids whose online/offline changes the user is
	// told of (at most 100).
	Watchlist []string
}

// UserAuth is a signed sign-in.
type UserAuth struct {
	// Auth is "app_key:signature".
	Auth string
	// UserData is the exact JSON that was signed.
	UserData string
	// UserID is the token's user.
	UserID string
}

// PusherJS is the JSON object pusher-js expects from a user authentication
// endpoint.
func (a UserAuth) PusherJS() map[string]string {
	return map[string]string{"auth": a.Auth, "user_data": a.UserData}
}

// AuthenticateUser asks AuthService to sign the user's sign-in. Errors are
// as for AuthorizeChannel.
func (c *Client) AuthenticateUser(ctx context.Context, req UserAuthRequest) (UserAuth, error) {
	info, err := toStruct(req.UserInfo)
	if err != nil {
		return UserAuth{}, err
	}
	resp, err := c.auth.AuthenticateUser(ctx, &pushercmv1.AuthenticateUserRequest{
		SocketId: req.SocketID, Token: req.UserToken, UserInfo: info, Watchlist: req.Watchlist,
	})
	if err != nil {
		return UserAuth{}, err
	}
	return UserAuth{Auth: resp.GetAuth(), UserData: resp.GetUserData(), UserID: resp.GetUserId()}, nil
}

// Auth is the raw AuthService stub.
func (c *Client) Auth() pushercmv1.AuthServiceClient { return c.auth }

func toStruct(m map[string]any) (*structpb.Struct, error) {
	if m == nil {
		return nil, nil
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("client: user info: %w", err)
	}
	return s, nil
}

// Metadata is the google.rpc.ErrorInfo metadata of err (for a refusal,
// "rule" names the deciding rule and "channel" the channel), or nil.
func Metadata(err error) map[string]string {
	if info := errorInfo(err); info != nil {
		return info.GetMetadata()
	}
	return nil
}

// Message is the status message of err: for refusals, why in words.
func Message(err error) string { return status.Convert(err).Message() }
