package peers

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	edgebench "github.com/milequest/pushercm/bench/edge"
	"github.com/milequest/pushercm/config"
)

// SoketiVersion is the release bench/peers/soketi/package.json pins.
const SoketiVersion = "1.6.1"

// Soketi runs soketi (Bin: node_modules/.bin/soketi) with Config
// (bench/peers/soketi/config.json), its port replaced by a free one: the
// array app manager with pushercm's dev app, no limits.
type Soketi struct {
	Bin, Config string
}

// Name implements Peer.
func (Soketi) Name() string { return "soketi " + SoketiVersion }

// Start implements Peer.
func (s Soketi) Start() (*Proc, error) {
	raw, err := os.ReadFile(s.Config)
	if err != nil {
		return nil, err
	}
	var conf map[string]any
	if err := json.Unmarshal(raw, &conf); err != nil {
		return nil, fmt.Errorf("%s: %w", s.Config, err)
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	conf["port"] = ports[0]
	dir, err := os.MkdirTemp("", "peerload-soketi-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "config.json")
	out, _ := json.Marshal(conf)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	bin, err := filepath.Abs(s.Bin) // the command runs in dir
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(bin, "start", "--config="+path)
	cmd.Dir = dir
	p, err := start("soketi", cmd, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	p.WSAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	p.APIAddr = p.WSAddr
	if err := p.waitListening(p.WSAddr); err != nil {
		return nil, err
	}
	return p, nil
}

func (Soketi) target(p *Proc) edgebench.Target {
	return edgebench.Target{Addr: p.WSAddr, AppID: config.DevAppID, Key: config.DevAppKey, Secret: config.DevAppSecret}
}

// Subscribe implements Peer.
func (s Soketi) Subscribe(ctx context.Context, p *Proc, channel string) (net.Conn, error) {
	return pusherSubscribe(ctx, s.target(p), channel)
}

// Framing implements Peer.
func (Soketi) Framing() edgebench.Framing { return nil }

// Publisher implements Peer.
func (s Soketi) Publisher(p *Proc) Publisher {
	return pusherPublisher{edgebench.NewPublisher(s.target(p))}
}

// GRPC implements Peer: soketi has no gRPC API.
func (Soketi) GRPC(*Proc) *GRPCCall { return nil }
