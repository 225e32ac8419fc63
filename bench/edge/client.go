package edgebench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/gobwas/ws"
)

// Target is the server under test.
type Target struct {
	// Addr is host:port of the realtime listener.
	Addr               string
	AppID, Key, Secret string
	// LocalIP, when set, is the source address of client sockets (any 127.x.y.z
	// works on Linux loopback), to spread many clients over several addresses.
	LocalIP string
}

// Client is one raw Pusher protocol connection.
type Client struct {
	conn     net.Conn
	br       *bufio.Reader
	SocketID string
	buf      []byte
}

// Dial connects and reads pusher:connection_established.
func Dial(ctx context.Context, t Target) (*Client, error) {
	d := ws.Dialer{Timeout: 30 * time.Second}
	if t.LocalIP != "" {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(t.LocalIP)}}
		d.NetDial = nd.DialContext
	}
	conn, br, _, err := d.Dial(ctx, "ws://"+t.Addr+"/app/"+t.Key+"?protocol=7&client=edgeload&version=1")
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, br: bufio.NewReaderSize(conn, 2048)}
	if br != nil {
		// Bytes already read past the handshake (the first frame) come first.
		c.br = bufio.NewReaderSize(io.MultiReader(br, conn), 2048)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	op, p, err := c.read()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Time{})
	var m struct {
		Event string `json:"event"`
		Data  string `json:"data"`
	}
	if op != ws.OpText || json.Unmarshal(p, &m) != nil || m.Event != "pusher:connection_established" {
		_ = conn.Close()
		return nil, fmt.Errorf("unexpected first frame %q", p)
	}
	var d2 struct {
		SocketID string `json:"socket_id"`
	}
	if err := json.Unmarshal([]byte(m.Data), &d2); err != nil {
		_ = conn.Close()
		return nil, err
	}
	c.SocketID = d2.SocketID
	return c, nil
}

// read returns the next frame's opcode and payload (valid until the next read).
func (c *Client) read() (ws.OpCode, []byte, error) {
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return 0, nil, err
	}
	if h.Length > 1<<20 {
		return 0, nil, errors.New("frame too large")
	}
	if int64(cap(c.buf)) < h.Length {
		c.buf = make([]byte, h.Length)
	}
	p := c.buf[:h.Length]
	if _, err := io.ReadFull(c.br, p); err != nil {
		return 0, nil, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	return h.OpCode, p, nil
}

// write sends a masked client frame.
func (c *Client) write(op ws.OpCode, p []byte) error {
	f := ws.NewFrame(op, true, append([]byte(nil), p...))
	f.Header.Masked = true
	binary.LittleEndian.PutUint32(f.Header.Mask[:], rand.Uint32())
	ws.Cipher(f.Payload, f.Header.Mask, 0)
	return ws.WriteFrame(c.conn, f)
}

// Subscribe sends pusher:subscribe for a public channel and waits for success.
func (c *Client) Subscribe(channel string) error {
	msg := []byte(`{"event":"pusher:subscribe","data":{"auth":"","channel":` + strconv.Quote(channel) + `}}`)
	if err := c.write(ws.OpText, msg); err != nil {
		return err
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer func() { _ = c.conn.SetReadDeadline(time.Time{}) }()
	for {
		op, p, err := c.read()
		if err != nil {
			return err
		}
		if op == ws.OpText && bytes.Contains(p, []byte(`"pusher_internal:subscription_succeeded"`)) {
			return nil
		}
	}
}

// Unsubscribe sends pusher:unsubscribe (Pusher sends no answer).
func (c *Client) Unsubscribe(channel string) error {
	return c.write(ws.OpText, []byte(`{"event":"pusher:unsubscribe","data":{"channel":`+strconv.Quote(channel)+`}}`))
}

// ErrServerClosed is returned by Next when the server sent a close frame.
var ErrServerClosed = errors.New("server closed the connection")

// Next returns the payload of the next text frame other than pusher:ping (valid
// until the next read), answering pings on the way, for clients read by their own
// goroutine rather than by a Receiver.
func (c *Client) Next() ([]byte, error) {
	for {
		op, p, err := c.read()
		if err != nil {
			return nil, err
		}
		switch op {
		case ws.OpText:
			if bytes.HasPrefix(p, []byte(`{"event":"pusher:ping"`)) {
				if err := c.write(ws.OpText, []byte(`{"event":"pusher:pong","data":{}}`)); err != nil {
					return nil, err
				}
				continue
			}
			return p, nil
		case ws.OpPing:
			if err := c.write(ws.OpPong, p); err != nil {
				return nil, err
			}
		case ws.OpClose:
			return nil, fmt.Errorf("%w: %x", ErrServerClosed, p)
		}
	}
}

// SetReadDeadline bounds the next reads.
func (c *Client) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// Close closes the socket.
func (c *Client) Close() error { return c.conn.Close() }

var dataKey = []byte(`"data":"`)

// parseTS returns the unix-nano timestamp the publisher put in an event's data (0 when
// the data is not a timestamp).
func parseTS(p []byte) int64 {
	i := bytes.Index(p, dataKey)
	if i < 0 {
		return 0
	}
	var n int64
	for _, b := range p[i+len(dataKey):] {
		if b < '0' || b > '9' {
			break
		}
		n = n*10 + int64(b-'0')
	}
	return n
}
