package authsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/protocol"
)

// Transports name the caller in metrics and spans.
const (
	TransportGRPC = "grpc"
	TransportHTTP = "http"
)

// Outcomes of a decision (the outcome label).
const (
	OutcomeAllowed         = "allowed"
	OutcomeDenied          = "denied"          // a rule (or default deny) refused
	OutcomeUnauthenticated = "unauthenticated" // token missing, bad or expired
	OutcomeInvalid         = "invalid"         // malformed request (socket id, channel name, user_info)
	OutcomeError           = "error"           // anything unexpected
)

// Rule labels for decisions no configured rule made. They are in
// parentheses so they cannot collide with configured rule names
// ([A-Za-z0-9_.:-]).
const (
	RulePublic     = "(public)"     // public channel: no rule needed
	RuleDefault    = "(default)"    // no rule matched: default deny
	RuleEncryption = "(encryption)" // encrypted channel without a master key
	RuleNone       = "(none)"       // refused before any rule ran
)

// MetricName is the decisions counter's OpenTelemetry name; the Prometheus
// exporter publishes it as pushercm_auth_decisions_total.
const MetricName = "pushercm.auth.decisions"

const instrumentation = "github.com/milequest/pushercm/authz/authsvc"

// TokenVerifier checks a user's JWT; *authz.Verifier satisfies it.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*authz.Principal, error)
}

// Config builds a Service.
type Config struct {
	// Verifier checks user tokens. Required.
	Verifier TokenVerifier
	// Authorizer decides and signs. Required.
	Authorizer *authz.Authorizer
	// TracerProvider for the per-decision span; nil: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider for the decisions counter; nil: otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Logger gets refusals at DEBUG and unexpected failures at ERROR, never
	// tokens. Default slog.Default().
	Logger *slog.Logger
	// AnnotateParentSpan puts the decision's attributes on the caller's
	// recording span instead of starting a child span. Set it when every
	// call runs inside a span of its own, as gRPC handlers under otelgrpc do.
	AnnotateParentSpan bool
}

// Service verifies tokens, decides, signs and records. Safe for concurrent
// use.
type Service struct {
	verifier  TokenVerifier
	authz     *authz.Authorizer
	tracer    trace.Tracer
	decisions metric.Int64Counter
	log       *slog.Logger

	annotateParent bool

	// attrs caches one measurement option per label combination: the label
	// space is bounded, and building attribute sets per call would allocate
	// on the hot path.
	attrs sync.Map // labels -> *recorded
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Verifier == nil || cfg.Authorizer == nil {
		return nil, errors.New("authsvc: verifier and authorizer are required")
	}
	tp, mp, log := cfg.TracerProvider, cfg.MeterProvider, cfg.Logger
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if log == nil {
		log = slog.Default()
	}
	counter, err := mp.Meter(instrumentation).Int64Counter(MetricName,
		metric.WithDescription("Channel authorization and user sign-in decisions, by operation, transport, channel kind, deciding rule and outcome."))
	if err != nil {
		return nil, fmt.Errorf("authsvc: decisions counter: %w", err)
	}
	return &Service{
		verifier:  cfg.Verifier,
		authz:     cfg.Authorizer,
		tracer:    tp.Tracer(instrumentation),
		decisions: counter,
		log:       log,

		annotateParent: cfg.AnnotateParentSpan,
	}, nil
}

// UserResult is a sign-in answer plus the user it was made for.
type UserResult struct {
	authz.UserAuth
	UserID string
}

// AuthorizeChannel verifies token (when not empty) and asks the Authorizer
// about req. transport is TransportGRPC or TransportHTTP.
func (s *Service) AuthorizeChannel(ctx context.Context, transport, token string, req authz.ChannelRequest) (authz.ChannelAuth, error) {
	ctx, span, own := s.span(ctx, "authz.AuthorizeChannel")
	if own {
		defer span.End()
	}
	kind := channelKind(req.Channel)

	out, err := s.authorizeChannel(ctx, token, req)
	rule, outcome := classify(out.MatchedRule, kind, err)
	s.record(ctx, span, "channel", transport, kind, rule, outcome, err)
	if err != nil {
		s.logRefusal(ctx, "channel authorization refused", transport, kind, rule, outcome, err)
		return authz.ChannelAuth{}, err
	}
	return out, nil
}

func (s *Service) authorizeChannel(ctx context.Context, token string, req authz.ChannelRequest) (authz.ChannelAuth, error) {
	p, err := s.principal(ctx, token)
	if err != nil {
		return authz.ChannelAuth{}, err
	}
	return s.authz.AuthorizeChannel(ctx, p, req)
}

// AuthenticateUser verifies token and signs a pusher:signin for req.
func (s *Service) AuthenticateUser(ctx context.Context, transport, token string, req authz.UserRequest) (UserResult, error) {
	ctx, span, own := s.span(ctx, "authz.AuthenticateUser")
	if own {
		defer span.End()
	}

	var out UserResult
	p, err := s.principal(ctx, token)
	if err == nil {
		out.UserAuth, err = s.authz.AuthenticateUser(ctx, p, req)
	}
	rule, outcome := classify("", "user", err)
	if err == nil {
		rule = RuleNone // sign-in has no channel rules
	}
	s.record(ctx, span, "user", transport, "user", rule, outcome, err)
	if err != nil {
		s.logRefusal(ctx, "user authentication refused", transport, "user", rule, outcome, err)
		return UserResult{}, err
	}
	out.UserID = p.Subject
	return out, nil
}

// span returns the span that describes this decision. Inside a recording
// span that exists for this one call (otelgrpc's server span of
// AuthService/AuthorizeChannel), that span is annotated: it already is one
// span per authorization, and a child would only add cost on a hot path
// (issue 4 measures it against an empty RPC). Otherwise (the HTTP
// endpoints) a span of its own is started.
//
// own reports whether the span was started here (and must be ended by the
// caller).
func (s *Service) span(ctx context.Context, name string) (_ context.Context, _ trace.Span, own bool) {
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() && s.annotateParent {
		return ctx, parent, false
	}
	ctx, span := s.tracer.Start(ctx, name, internalKind)
	return ctx, span, true
}

// internalKind is built once: trace.WithSpanKind allocates.
var internalKind = trace.WithSpanKind(trace.SpanKindInternal)

// principal verifies a non-empty token; an empty one is no principal.
func (s *Service) principal(ctx context.Context, token string) (*authz.Principal, error) {
	if token == "" {
		return nil, nil
	}
	return s.verifier.Verify(ctx, token)
}

// channelKind is a bounded label for the channel's kind.
func channelKind(name string) string {
	ch, err := protocol.ParseChannel(name, 0)
	if err != nil {
		return "invalid"
	}
	return ch.Kind.String()
}

// classify turns a result into its rule and outcome labels.
func classify(matched, kind string, err error) (rule, outcome string) {
	if err == nil {
		if matched == "" {
			return RulePublic, OutcomeAllowed
		}
		return matched, OutcomeAllowed
	}
	var denied *authz.DeniedError
	switch {
	case errors.As(err, &denied):
		switch {
		case errors.Is(err, authz.ErrEncryptionUnavailable):
			return RuleEncryption, OutcomeDenied
		case denied.Rule == "":
			return RuleDefault, OutcomeDenied
		}
		return denied.Rule, OutcomeDenied
	case errors.Is(err, authz.ErrUnauthenticated):
		return RuleNone, OutcomeUnauthenticated
	case errors.Is(err, authz.ErrInvalidArgument):
		return RuleNone, OutcomeInvalid
	case errors.Is(err, authz.ErrPermissionDenied):
		return RuleNone, OutcomeDenied
	}
	return RuleNone, OutcomeError
}

type labels struct{ op, transport, kind, rule, outcome string }

// recorded is what one label combination needs on every call, built once.
type recorded struct {
	opt metric.AddOption     // the counter's attribute set
	kvs []attribute.KeyValue // the span's attributes
}

func (s *Service) record(ctx context.Context, span trace.Span, op, transport, kind, rule, outcome string, err error) {
	l := labels{op, transport, kind, rule, outcome}
	v, ok := s.attrs.Load(l)
	if !ok {
		v, _ = s.attrs.LoadOrStore(l, &recorded{
			opt: metric.WithAttributeSet(attribute.NewSet(
				attribute.String("op", op),
				attribute.String("transport", transport),
				attribute.String("kind", kind),
				attribute.String("rule", rule),
				attribute.String("outcome", outcome),
			)),
			kvs: []attribute.KeyValue{
				attribute.String("pushercm.auth.transport", transport),
				attribute.String("pushercm.channel.kind", kind),
				attribute.String("pushercm.auth.rule", rule),
				attribute.String("pushercm.auth.outcome", outcome),
			},
		})
	}
	r := v.(*recorded)
	s.decisions.Add(ctx, 1, r.opt)

	if !span.IsRecording() {
		return
	}
	span.SetAttributes(r.kvs...)
	if outcome == OutcomeError {
		// Only unexpected failures mark the span as an error; refusals are
		// normal answers. The message is a fixed string: causes are logged.
		span.SetStatus(codes.Error, "authorization failed unexpectedly")
	} else if err != nil {
		span.SetAttributes(attribute.String("pushercm.auth.error_kind", errorKind(err)))
	}
}

// errorKind is a short, non-secret name of a refusal (the authz sentinel's
// message, never the detail).
func errorKind(err error) string {
	for _, k := range []error{
		authz.ErrTokenMissing, authz.ErrTokenExpired, authz.ErrTokenNotYetValid, authz.ErrTokenIssuer,
		authz.ErrTokenAudience, authz.ErrTokenAlgorithm, authz.ErrTokenSignature, authz.ErrTokenUnknownKey,
		authz.ErrTokenInvalid, authz.ErrEncryptionUnavailable, authz.ErrRuleDenied, authz.ErrScopeMissing,
	} {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	var ae *authz.ArgumentError
	if errors.As(err, &ae) {
		return "invalid " + ae.Field
	}
	return "other"
}

func (s *Service) logRefusal(ctx context.Context, msg, transport, kind, rule, outcome string, err error) {
	if outcome == OutcomeError {
		s.log.LogAttrs(ctx, slog.LevelError, msg, slog.String("transport", transport), slog.String("kind", kind),
			slog.String("outcome", outcome), slog.String("error", err.Error()))
		return
	}
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	// authz error messages carry no token or key material (authz/errors.go).
	s.log.LogAttrs(ctx, slog.LevelDebug, msg, slog.String("transport", transport), slog.String("kind", kind),
		slog.String("rule", rule), slog.String("outcome", outcome), slog.String("error", err.Error()))
}
