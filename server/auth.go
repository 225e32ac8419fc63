package server

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/authz/authsvc"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// maxUserInfoProtoBytes bounds user_info before it is converted to JSON.
// The Authorizer applies the exact limit (1 KB once merged); this only keeps
// a multi-megabyte Struct from being converted at all.
const maxUserInfoProtoBytes = 16 << 10

// ChannelAuthorizer is what AuthService needs: *authsvc.Service.
type ChannelAuthorizer interface {
	AuthorizeChannel(ctx context.Context, transport, token string, req authz.ChannelRequest) (authz.ChannelAuth, error)
	AuthenticateUser(ctx context.Context, transport, token string, req authz.UserRequest) (authsvc.UserResult, error)
}

// Auth implements pushercm.v1.AuthService. The caller's service token (scope
// channels:authorize) is checked by the interceptors; the user's token
// travels in the request and is verified by the ChannelAuthorizer. Errors
// are authz's typed errors, mapped to UNAUTHENTICATED / PERMISSION_DENIED /
// INVALID_ARGUMENT (with the deciding rule in ErrorInfo metadata) by the
// interceptors.
type Auth struct {
	pushercmv1.UnimplementedAuthServiceServer
	Authorizer ChannelAuthorizer
}

// AuthorizeChannel signs a channel subscription the token's user may make.
func (s *Auth) AuthorizeChannel(ctx context.Context, req *pushercmv1.AuthorizeChannelRequest) (*pushercmv1.AuthorizeChannelResponse, error) {
	info, err := userInfoJSON(req.GetUserInfo())
	if err != nil {
		return nil, err
	}
	out, err := s.Authorizer.AuthorizeChannel(ctx, authsvc.TransportGRPC, req.GetToken(), authz.ChannelRequest{
		SocketID: req.GetSocketId(),
		Channel:  req.GetChannelName(),
		UserInfo: info,
	})
	if err != nil {
		return nil, err
	}
	return &pushercmv1.AuthorizeChannelResponse{
		Auth:         out.Auth,
		ChannelData:  out.ChannelData,
		SharedSecret: out.SharedSecret,
		UserId:       out.UserID,
		Permissions:  out.Permissions,
		MatchedRule:  out.MatchedRule,
	}, nil
}

// AuthenticateUser signs a pusher:signin for the token's user.
func (s *Auth) AuthenticateUser(ctx context.Context, req *pushercmv1.AuthenticateUserRequest) (*pushercmv1.AuthenticateUserResponse, error) {
	info, err := userInfoJSON(req.GetUserInfo())
	if err != nil {
		return nil, err
	}
	out, err := s.Authorizer.AuthenticateUser(ctx, authsvc.TransportGRPC, req.GetToken(), authz.UserRequest{
		SocketID:  req.GetSocketId(),
		UserInfo:  info,
		Watchlist: req.GetWatchlist(),
	})
	if err != nil {
		return nil, err
	}
	return &pushercmv1.AuthenticateUserResponse{Auth: out.Auth, UserData: out.UserData, UserId: out.UserID}, nil
}

// userInfoJSON encodes a Struct as a JSON object (nil for none).
// encoding/json is used rather than protojson because protojson's output is
// deliberately unstable, and this JSON ends up in signed channel_data.
func userInfoJSON(s *structpb.Struct) ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	if n := proto.Size(s); n > maxUserInfoProtoBytes {
		return nil, &authz.ArgumentError{Field: "user_info", Reason: fmt.Sprintf("%d bytes is far over the limit", n)}
	}
	b, err := json.Marshal(s.AsMap())
	if err != nil {
		// Only NaN and infinities fail; JSON has no way to say them.
		return nil, &authz.ArgumentError{Field: "user_info", Reason: "numbers must be finite"}
	}
	return b, nil
}
