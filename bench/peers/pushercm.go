package peers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/milequest/pushercm/authz"
	edgebench "github.com/milequest/pushercm/bench/edge"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// Pushercm runs a pushercm binary (`serve --dev` with Config) on the embedded
// driver.
type Pushercm struct {
	Bin    string // the pushercm binary
	Config string // path of the YAML configuration (bench/peers/pushercm/pushercm.yaml)
	// HTTPAddr, when set, is the realtime listener's address instead of a
	// free port (the gRPC and ops listeners still take free ports).
	HTTPAddr string
	// Env is added to this process's environment (PUSHERCM_REDIS_URL and
	// the other cluster settings of a node).
	Env []string
	// Label, when set, is the Name (to tell builds or modes apart).
	Label string
}

// Name implements Peer.
func (s Pushercm) Name() string {
	if s.Label != "" {
		return s.Label
	}
	return "pushercm"
}

var servingLine = regexp.MustCompile(`msg="pushercm serving".* grpc=(\S+) http=(\S+)(?: ops=(\S+))?`)

// Start implements Peer. Logging is at WARN so that nothing is logged per call.
func (s Pushercm) Start() (*Proc, error) {
	httpAddr := s.HTTPAddr
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	cmd := exec.Command(s.Bin, "serve", "--dev", "--config", s.Config, "--grpc-addr", "127.0.0.1:0",
		"--http-addr", httpAddr, "--ops-addr", "127.0.0.1:0", "--log-level", "INFO")
	cmd.Env = append(os.Environ(), s.Env...)
	p, m, err := startPiped("pushercm", cmd, "", servingLine)
	if err != nil {
		return nil, err
	}
	p.GRPCAddr, p.WSAddr, p.APIAddr, p.OpsAddr = m[1], m[2], m[2], m[3]
	return p, nil
}

// Target is pushercm's dev app on p.
func (Pushercm) Target(p *Proc) edgebench.Target {
	return edgebench.Target{Addr: p.WSAddr, AppID: config.DevAppID, Key: config.DevAppKey, Secret: config.DevAppSecret}
}

// Subscribe implements Peer.
func (s Pushercm) Subscribe(ctx context.Context, p *Proc, channel string) (net.Conn, error) {
	return pusherSubscribe(ctx, s.Target(p), channel)
}

// Framing implements Peer.
func (Pushercm) Framing() edgebench.Framing { return nil }

// Publisher implements Peer.
func (s Pushercm) Publisher(p *Proc) Publisher {
	return pusherPublisher{edgebench.NewPublisher(s.Target(p))}
}

// GRPC implements Peer: BroadcastService.SendEvent with a service token
// minted with the dev JWT secret, the event id left empty (the server makes
// one per call, so no call is a duplicate).
func (Pushercm) GRPC(p *Proc) *GRPCCall {
	tok, err := authz.Mint([]byte(config.DevServiceSecret), authz.MintOptions{Subject: "peerload", Scopes: []string{"events:publish"}, TTL: time.Hour})
	if err != nil {
		panic(err) // a fixed secret and options: cannot fail
	}
	return &GRPCCall{
		Addr:          p.GRPCAddr,
		Method:        "/pushercm.v1.BroadcastService/SendEvent",
		Authorization: "Bearer " + tok,
		Request: func(channel, data string) []byte {
			b, err := proto.Marshal(&pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
				Channels: []string{channel}, Name: "bench", Payload: &pushercmv1.Event_Data{Data: data},
			}})
			if err != nil {
				panic(err)
			}
			return b
		},
	}
}

// Build compiles pushercm from this module into dir.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "pushercm")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/milequest/pushercm/cmd/pushercm")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building pushercm: %w", err)
	}
	return bin, nil
}
