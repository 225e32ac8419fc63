package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/encoding/protowire"

	edgebench "github.com/milequest/pushercm/bench/edge"
)

// CentrifugoVersion is the release `make bench-peers` installs.
const CentrifugoVersion = "v6.9.1"

// centrifugoAPIKey is the HTTP and gRPC API key of config.json.
const centrifugoAPIKey = "bench-api-key"

// Centrifugo runs a centrifugo binary with Config (bench/peers/centrifugo/
// config.json), its ports replaced by free ones: memory engine, anonymous
// subscribers allowed on channels without a namespace, the HTTP and gRPC
// APIs each checking the API key on every call.
type Centrifugo struct {
	Bin, Config string
	// RedisAddr, when set (host:port), replaces the memory engine with the
	// Redis engine there, every key and channel under RedisPrefix: nodes
	// started with the same two are one cluster.
	RedisAddr, RedisPrefix string
	// Label, when set, is the Name.
	Label string
}

// Name implements Peer.
func (c Centrifugo) Name() string {
	if c.Label != "" {
		return c.Label
	}
	return "Centrifugo " + CentrifugoVersion
}

// Start implements Peer.
func (c Centrifugo) Start() (*Proc, error) {
	raw, err := os.ReadFile(c.Config)
	if err != nil {
		return nil, err
	}
	var conf map[string]any
	if err := json.Unmarshal(raw, &conf); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Config, err)
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	section := func(name string) map[string]any {
		m, _ := conf[name].(map[string]any)
		if m == nil {
			m = map[string]any{}
			conf[name] = m
		}
		return m
	}
	section("http_server")["port"] = ports[0]
	section("grpc_api")["port"] = ports[1]
	if c.RedisAddr != "" {
		// Centrifugo v6: engine.type and engine.redis (configtypes.Engine,
		// RedisEngine: address is a list of redis:// URLs, one per shard).
		conf["engine"] = map[string]any{"type": "redis", "redis": map[string]any{
			"address": []string{"redis://" + c.RedisAddr}, "prefix": c.RedisPrefix,
		}}
	}
	dir, err := os.MkdirTemp("", "peerload-centrifugo-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "config.json")
	out, _ := json.Marshal(conf)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	bin, err := filepath.Abs(c.Bin) // the command runs in dir
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(bin, "--config", path)
	cmd.Dir = dir
	p, err := start("centrifugo", cmd, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	p.WSAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	p.APIAddr = p.WSAddr
	p.GRPCAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
	if err := p.waitListening(p.WSAddr, p.GRPCAddr); err != nil {
		return nil, err
	}
	return p, nil
}

// Subscribe implements Peer: Centrifugo's JSON protocol, an anonymous
// connect command, then a subscribe command.
func (Centrifugo) Subscribe(ctx context.Context, p *Proc, channel string) (net.Conn, error) {
	d := ws.Dialer{Timeout: 30 * time.Second}
	conn, br, _, err := d.Dial(ctx, "ws://"+p.WSAddr+"/connection/websocket")
	if err != nil {
		return nil, err
	}
	if br != nil {
		// The server speaks only when spoken to; nothing may precede the
		// connect reply.
		ws.PutReader(br)
		_ = conn.Close()
		return nil, errors.New("centrifugo: bytes before the connect command")
	}
	fail := func(err error) (net.Conn, error) {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	// wsutil reads straight from conn, no further than each frame, so that
	// nothing is left buffered when the receiver takes the socket.
	for i, cmd := range []string{`{"id":1,"connect":{}}`, `{"id":2,"subscribe":{"channel":` + strconv.Quote(channel) + `}}`} {
		if err := wsutil.WriteClientText(conn, []byte(cmd)); err != nil {
			return fail(err)
		}
		want := []byte(`"id":` + strconv.Itoa(i+1) + `,`)
		for {
			msg, err := wsutil.ReadServerText(conn)
			if err != nil {
				return fail(err)
			}
			if bytes.Contains(msg, []byte(`"error"`)) {
				return fail(fmt.Errorf("centrifugo: %s", msg))
			}
			if bytes.Contains(msg, want) {
				break
			}
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

var (
	centrifugoPub  = []byte(`"pub":{`)
	centrifugoPong = []byte{0x81, 0x82, 0, 0, 0, 0, '{', '}'} // masked text "{}", zero mask
)

// Framing implements Peer: Centrifugo packs several replies and pushes into
// one frame, one JSON object a line; an empty object is a ping that wants an
// empty object back.
func (Centrifugo) Framing() edgebench.Framing {
	return func(p []byte) (int, []byte) {
		n := bytes.Count(p, centrifugoPub)
		var pong []byte
		for line := range bytes.SplitSeq(p, []byte{'\n'}) {
			if string(line) == "{}" {
				pong = centrifugoPong
			}
		}
		return n, pong
	}
}

// Publisher implements Peer: POST /api/publish, or /api/batch of publish
// commands for several events, with the API key.
func (Centrifugo) Publisher(p *Proc) Publisher {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64, IdleConnTimeout: time.Minute}
	return &centrifugoPublisher{base: "http://" + p.APIAddr + "/api", http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

type centrifugoPublisher struct {
	base string
	http *http.Client
}

type centrifugoPublish struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

func (c *centrifugoPublisher) Publish(ctx context.Context, evs []edgebench.Event) error {
	var body []byte
	path := "/publish"
	pub := func(e edgebench.Event) centrifugoPublish {
		return centrifugoPublish{Channel: e.Channel, Data: json.RawMessage(strconv.Quote(e.Data))}
	}
	if len(evs) == 1 {
		body, _ = json.Marshal(pub(evs[0]))
	} else {
		path = "/batch"
		type command struct {
			Publish centrifugoPublish `json:"publish"`
		}
		cmds := make([]command, len(evs))
		for i, e := range evs {
			cmds[i].Publish = pub(e)
		}
		body, _ = json.Marshal(struct {
			Commands []command `json:"commands"`
		}{cmds})
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", centrifugoAPIKey)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	rb, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	// Errors come as 200 with an error object in the reply.
	if resp.StatusCode != 200 || bytes.Contains(rb, []byte(`"error"`)) {
		return fmt.Errorf("centrifugo publish: %d %s", resp.StatusCode, rb)
	}
	return nil
}

// GRPC implements Peer: CentrifugoApi.Publish with the API key; the data is
// a JSON string, as Centrifugo wants JSON.
func (Centrifugo) GRPC(p *Proc) *GRPCCall {
	return &GRPCCall{
		Addr:          p.GRPCAddr,
		Method:        "/centrifugal.centrifugo.api.CentrifugoApi/Publish",
		Authorization: "apikey " + centrifugoAPIKey,
		Request: func(channel, data string) []byte {
			// PublishRequest{channel = 1; bytes data = 2}
			b := protowire.AppendTag(nil, 1, protowire.BytesType)
			b = protowire.AppendString(b, channel)
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			return protowire.AppendString(b, strconv.Quote(data))
		},
	}
}
