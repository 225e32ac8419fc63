package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/internal/gcfloor"
)

// Main runs the pushercm command line and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := Command()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		var ex *exitError
		if errors.As(err, &ex) {
			if ex.err != nil {
				_, _ = fmt.Fprintln(stderr, "pushercm:", ex.err)
			}
			return ex.code
		}
		_, _ = fmt.Fprintln(stderr, "pushercm:", err) // nowhere left to report a failed write
		return 1
	}
	return 0
}

// exitError ends the command with a given exit status; err, when set, is
// printed first. A command returns one when its status means something
// other than "failed" (rules check: 2 is a deny).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitDenied is the status of `rules check` for a denied channel.
const exitDenied = 2

// Command is the root command with its subcommands.
func Command() *cobra.Command {
	root := &cobra.Command{
		Use:   "pushercm",
		Short: "Realtime control plane for apps that speak the Pusher Channels protocol",
		Long: `pushercm publishes events, authorizes channels and manages connections for
apps that use the Pusher Channels protocol, over gRPC. It delivers through its
own embedded Pusher-protocol server (the default) or through Pusher.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCommand(), tokenCommand(), versionCommand(), rulesCommand(), configCommand(), healthcheckCommand())
	return root
}

func serveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gRPC, realtime and ops listeners",
		Long: `Run pushercm: gRPC on --grpc-addr (default :50051), the realtime listener
(Pusher WebSocket, HTTP API, auth endpoints) on --http-addr (default :6001) and
/metrics, /healthz, /readyz on --ops-addr (default :9464).

Settings come from defaults, the YAML file of --config or PUSHERCM_CONFIG,
environment variables, then flags. --dev fills missing secrets with
development values and prints a service token to try the API with.

Signals: SIGINT/SIGTERM shut down gracefully; SIGHUP reloads JWT keys and
channel rules.`,
		Example: `  pushercm serve --dev
  PUSHER_APP_ID=1 PUSHER_KEY=k PUSHER_SECRET=s PUSHERCM_JWT_SECRET=... PUSHERCM_JWT_SERVICE_SECRET=... pushercm serve`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := config.Load(config.Source{Flags: cmd.Flags()})
			if err != nil {
				return err
			}
			return serve(cmd.Context(), l, cmd.OutOrStdout())
		},
	}
	config.RegisterFlags(cmd.Flags())
	return cmd
}

func serve(ctx context.Context, l *config.Loaded, out io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a, err := New(ctx, l, Options{})
	if err != nil {
		return err
	}
	if err := a.Start(); err != nil {
		_ = a.Shutdown(context.Background())
		return err
	}
	if l.Dev {
		printDevHelp(out, l, a)
	}
	// The tuner sets GOGC, a setting of the whole process: it belongs to
	// serve, not to an App (tests run several in one process). With the
	// floor off it does nothing, and its series stay at 0.
	tuner := gcfloor.New(gcfloor.Config{Floor: l.GC.HeapFloorBytes(), Logger: a.log.With("component", "gc")})
	for _, c := range tuner.Collectors() {
		if err := a.tel.Registry.Register(c); err != nil {
			a.log.Warn("heap floor metrics not registered", "err", err)
		}
	}
	tctx, tcancel := context.WithCancel(ctx)
	defer tcancel()
	go tuner.Run(tctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			_ = a.Reload(context.Background())
		case err := <-a.Failed():
			stop()
			return errors.Join(err, a.Shutdown(context.Background()))
		case <-ctx.Done():
			stop() // a second signal kills the process the usual way
			return a.Shutdown(context.Background())
		}
	}
}

func printDevHelp(out io.Writer, l *config.Loaded, a *App) {
	if l.JWT.Service.Secret == "" {
		return // service tokens come from an identity provider: nothing to mint
	}
	tok, err := authz.Mint([]byte(l.JWT.Service.Secret), authz.MintOptions{
		Subject: "dev-service", TTL: 24 * time.Hour, Issuer: l.JWT.Service.Issuer, Audience: l.JWT.Service.Audience,
		Scopes: []string{interceptors.ScopePublish, interceptors.ScopeAuthorize, interceptors.ScopeConnectionsRead, interceptors.ScopeConnectionsWrite},
	})
	if err != nil {
		return
	}
	grpcAddr := a.GRPCAddr()
	if strings.HasPrefix(grpcAddr, "[::]") {
		grpcAddr = "localhost" + strings.TrimPrefix(grpcAddr, "[::]")
	}
	// The banner is a convenience; a failed write must not stop the server.
	_, _ = fmt.Fprintf(out, `
==================== pushercm DEV MODE ====================
Development secrets are in use. Never run --dev in production.
Pusher app: id=%s key=%s secret=%s (WebSocket ws://localhost%s/app/%s)

A service token with every scope (valid 24h):
  export TOKEN=%s

Try:
  go tool grpcurl -plaintext %s list
  go tool grpcurl -plaintext -H "authorization: Bearer $TOKEN" \
    -d '{"event":{"channels":["my-channel"],"name":"hello","data":"{\"msg\":\"hi\"}"}}' \
    %s pushercm.v1.BroadcastService/SendEvent
%s============================================================
`, l.Pusher.AppID, l.Pusher.Key, l.Pusher.Secret, portOf(a.HTTPAddr()), l.Pusher.Key, tok, grpcAddr, grpcAddr, webPages(l, a))
}

// webPages is the banner's lines about the demo and the console.
func webPages(l *config.Loaded, a *App) string {
	var b strings.Builder
	if config.Bool(l.Demo.Enabled, false) {
		fmt.Fprintf(&b, "\nDemo app:  http://localhost%s/demo/\n", portOf(a.HTTPAddr()))
	}
	if l.Ops.Console {
		fmt.Fprintf(&b, "Console:   http://localhost%s/console/ (paste $TOKEN)\n", portOf(a.OpsAddr()))
	} else {
		b.WriteString("Console:   off; set PUSHERCM_OPS_CONSOLE=true for /console/ on the ops listener\n")
	}
	return b.String()
}

func portOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i:]
	}
	return addr
}

func tokenCommand() *cobra.Command {
	var (
		o      authz.MintOptions
		secret string
		dev    bool
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a development JWT (HS256)",
		Long: `Mint an HS256 JWT for development and tests.

A user token (no --scopes) is signed with --secret, else PUSHERCM_JWT_SECRET,
else (with --dev) the dev-mode JWT secret; issuer and audience default to
PUSHERCM_JWT_ISSUER and PUSHERCM_JWT_AUDIENCE.

A service token (--scopes given) is signed with the service-token trust:
--secret, else PUSHERCM_JWT_SERVICE_SECRET, else (with --dev) the dev-mode
service secret; issuer and audience default to PUSHERCM_JWT_SERVICE_ISSUER and
PUSHERCM_JWT_SERVICE_AUDIENCE. Either way the token verifies against a server
configured the same way.

Service scopes: events:publish, channels:authorize, connections:read,
connections:write.`,
		Example: `  pushercm token --dev --sub svc-activity --scopes events:publish
  pushercm token --dev --sub user-1 --teams team-a,team-b --roles admin --ttl 1h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Service tokens have a trust of their own (jwt.service).
			env, devSecret := "PUSHERCM_JWT_", config.DevJWTSecret
			if len(o.Scopes) > 0 {
				env, devSecret = "PUSHERCM_JWT_SERVICE_", config.DevServiceSecret
			}
			if secret == "" {
				secret = os.Getenv(env + "SECRET")
			}
			if secret == "" && dev {
				secret = devSecret
			}
			if secret == "" {
				return fmt.Errorf("no secret: pass --secret, set %sSECRET, or use --dev", env)
			}
			if o.Issuer == "" {
				o.Issuer = os.Getenv(env + "ISSUER")
			}
			if len(o.Audience) == 0 && os.Getenv(env+"AUDIENCE") != "" {
				o.Audience = strings.Split(os.Getenv(env+"AUDIENCE"), ",")
			}
			tok, err := authz.Mint([]byte(secret), o)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Subject, "sub", "", "subject: the user id or service name")
	f.StringSliceVar(&o.Teams, "teams", nil, "team ids (comma separated)")
	f.StringSliceVar(&o.Roles, "roles", nil, "role names (comma separated)")
	f.StringSliceVar(&o.Scopes, "scopes", nil, "service scopes (comma separated; makes a service token, signed with the service secret)")
	f.StringVar(&o.Name, "name", "", "display name (default presence user_info)")
	f.DurationVar(&o.TTL, "ttl", time.Hour, "lifetime; tokens always expire")
	f.StringVar(&o.Issuer, "issuer", "", "iss claim (default $PUSHERCM_JWT_ISSUER, or $PUSHERCM_JWT_SERVICE_ISSUER with --scopes)")
	f.StringSliceVar(&o.Audience, "audience", nil, "aud claim (default $PUSHERCM_JWT_AUDIENCE, or $PUSHERCM_JWT_SERVICE_AUDIENCE with --scopes)")
	f.StringVar(&secret, "secret", "", "HMAC secret (default $PUSHERCM_JWT_SECRET, or $PUSHERCM_JWT_SERVICE_SECRET with --scopes)")
	f.BoolVar(&dev, "dev", false, "use the dev-mode secret (user or service) when no other is set")
	return cmd
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := Build()
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "pushercm %s\ncommit: %s\nbuilt: %s\ngo: %s %s/%s\n",
				b.Version, b.Commit, b.Date, b.GoVersion, runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

func rulesCommand() *cobra.Command {
	rules := &cobra.Command{Use: "rules", Short: "Inspect channel authorization rules"}
	var token, channel, userInfo string
	check := &cobra.Command{
		Use:   "check",
		Short: "Say whether a token may subscribe to a channel, and which rule decided",
		Long: `Evaluate the channel rules of the configuration (the same settings as serve:
--config / PUSHERCM_CONFIG, environment, --dev) for a user token and a
channel, and print the decision, the deciding rule and why. Exit status 0
for allow, 2 for deny.`,
		Example: `  pushercm rules check --dev --token "$(pushercm token --dev --sub u1 --teams t1)" --channel presence-team-t1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := config.Load(config.Source{Flags: cmd.Flags()})
			if err != nil {
				return err
			}
			verifier, _, authorizer, err := newAuthz(&l.Config, newLogger(l.Log, io.Discard))
			if err != nil {
				return err
			}
			defer func() { _ = verifier.Close() }()
			var info []byte
			if userInfo != "" {
				info = []byte(userInfo)
			}
			exp := authorizer.Check(cmd.Context(), verifier, token, channel, info)
			if _, err := fmt.Fprintln(cmd.OutOrStdout(), exp.String()); err != nil {
				return err
			}
			if !exp.Allowed {
				// The decision is printed above; the status says deny.
				return &exitError{code: exitDenied}
			}
			return nil
		},
	}
	config.RegisterFlags(check.Flags())
	check.Flags().StringVar(&token, "token", "", "the user's JWT (not needed for public channels)")
	check.Flags().StringVar(&channel, "channel", "", "channel name")
	check.Flags().StringVar(&userInfo, "user-info", "", "presence user_info JSON")
	_ = check.MarkFlagRequired("channel")
	rules.AddCommand(check)
	return rules
}

func configCommand() *cobra.Command {
	cfg := &cobra.Command{Use: "config", Short: "Check the configuration"}
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and print it, secrets redacted",
		Long: `Load the configuration exactly as serve does (defaults, the YAML file of
--config or PUSHERCM_CONFIG, environment, flags), validate it, load the JWT
keys and compile the channel rules, then print the effective configuration
as YAML with secrets redacted. Nothing listens. Exit status 0 when serve
would start with it, 1 otherwise: run it in CI before a deploy.`,
		Example: `  pushercm config check --config pushercm.yaml
  PUSHERCM_CONFIG=pushercm.yaml PUSHER_SECRET=... pushercm config check`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := config.Load(config.Source{Flags: cmd.Flags()})
			if err != nil {
				return err
			}
			verifier, _, _, err := newAuthz(&l.Config, newLogger(l.Log, io.Discard))
			if err != nil {
				return err
			}
			_ = verifier.Close()
			if _, err := edgeLimitOptions(l.Edge); err != nil {
				return err
			}
			out, err := yaml.Marshal(l.Effective())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			file := l.File
			if file == "" {
				file = "(none)"
			}
			if _, err := fmt.Fprintf(w, "# configuration is valid\n# file: %s\n", file); err != nil {
				return err
			}
			if len(l.DevFilled) > 0 {
				if _, err := fmt.Fprintf(w, "# --dev filled: %s\n", strings.Join(l.DevFilled, ", ")); err != nil {
					return err
				}
			}
			_, err = w.Write(out)
			return err
		},
	}
	config.RegisterFlags(check.Flags())
	cfg.AddCommand(check)
	return cfg
}
