package interceptors

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/authz"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// Scopes of service tokens (DESIGN.md §2).
const (
	ScopePublish          = "events:publish"
	ScopeAuthorize        = "channels:authorize"
	ScopeConnectionsRead  = "connections:read"
	ScopeConnectionsWrite = "connections:write"
)

// MethodScopes is the scope each RPC needs. A method missing here is refused
// (default deny), so a new RPC must be added deliberately.
var MethodScopes = map[string]string{
	pushercmv1.BroadcastService_SendEvent_FullMethodName:  ScopePublish,
	pushercmv1.BroadcastService_SendBatch_FullMethodName:  ScopePublish,
	pushercmv1.BroadcastService_SendToUser_FullMethodName: ScopePublish,

	pushercmv1.AuthService_AuthorizeChannel_FullMethodName: ScopeAuthorize,
	pushercmv1.AuthService_AuthenticateUser_FullMethodName: ScopeAuthorize,

	pushercmv1.ConnectionService_ListConnections_FullMethodName:          ScopeConnectionsRead,
	pushercmv1.ConnectionService_GetConnection_FullMethodName:            ScopeConnectionsRead,
	pushercmv1.ConnectionService_ListChannels_FullMethodName:             ScopeConnectionsRead,
	pushercmv1.ConnectionService_GetChannel_FullMethodName:               ScopeConnectionsRead,
	pushercmv1.ConnectionService_ListPresenceMembers_FullMethodName:      ScopeConnectionsRead,
	pushercmv1.ConnectionService_GetRateLimitStatus_FullMethodName:       ScopeConnectionsRead,
	pushercmv1.ConnectionService_GetHealthStatus_FullMethodName:          ScopeConnectionsRead,
	pushercmv1.ConnectionService_GetMetrics_FullMethodName:               ScopeConnectionsRead,
	pushercmv1.ConnectionService_WatchConnectionEvents_FullMethodName:    ScopeConnectionsRead,
	pushercmv1.ConnectionService_ListNodes_FullMethodName:                ScopeConnectionsRead,
	pushercmv1.ConnectionService_DisconnectConnection_FullMethodName:     ScopeConnectionsWrite,
	pushercmv1.ConnectionService_TerminateUserConnections_FullMethodName: ScopeConnectionsWrite,
	pushercmv1.ConnectionService_Subscribe_FullMethodName:                ScopeConnectionsWrite,
	pushercmv1.ConnectionService_Unsubscribe_FullMethodName:              ScopeConnectionsWrite,
}

// Public reports whether a method needs no token: the standard health
// service and server reflection.
func Public(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(fullMethod, "/grpc.reflection.v1.ServerReflection/") ||
		strings.HasPrefix(fullMethod, "/grpc.reflection.v1alpha.ServerReflection/")
}

// TokenVerifier checks a bearer token; *authz.Verifier satisfies it.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*authz.Principal, error)
}

// Auth authenticates service callers: it reads `authorization: Bearer
// <jwt>`, verifies it, checks the method's scope and puts the principal in
// the context (authz.FromContext). Public methods pass untouched.
type Auth struct {
	// Verifier must trust service tokens only (jwt.service): with the
	// user-token verifier, whoever can mint user tokens could claim scopes.
	Verifier TokenVerifier
}

func (a *Auth) authenticate(ctx context.Context, method string) (context.Context, error) {
	if Public(method) {
		return ctx, nil
	}
	raw, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	p, err := a.Verifier.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	scope, ok := MethodScopes[method]
	if !ok {
		return nil, &authz.DeniedError{Kind: authz.ErrScopeMissing, Reason: "method " + method + " is not open to service tokens"}
	}
	if !p.HasScope(scope) {
		return nil, &authz.DeniedError{Kind: authz.ErrScopeMissing, Reason: fmt.Sprintf("token lacks scope %q", scope)}
	}
	return authz.NewContext(ctx, p), nil
}

func bearer(ctx context.Context) (string, error) {
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 {
		return "", &authz.TokenError{Kind: authz.ErrTokenMissing, Detail: "no authorization metadata; send `authorization: Bearer <jwt>`"}
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return "", &authz.TokenError{Kind: authz.ErrTokenMissing, Detail: "authorization metadata is not `Bearer <jwt>`"}
	}
	return strings.TrimSpace(token), nil
}

// Stream authenticates streaming calls.
func (a *Auth) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
}

// contextStream carries a derived context on a server stream.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
