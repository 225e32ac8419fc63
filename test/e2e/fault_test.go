package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

// faultServer starts the binary with yaml as its configuration file.
func faultServer(t *testing.T, yaml string) *Server {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "pushercm.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return StartServer(t, []string{"PUSHERCM_CONFIG=" + cfg})
}

// publishContext is a call context with a dev service token allowed to publish.
func publishContext(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	tok := pushertest.Mint(t, config.DevServiceSecret, authz.MintOptions{Subject: "fault-test", Scopes: []string{"events:publish"}})
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// reader is a subscriber that reads everything until the server closes it.
type reader struct {
	c    *pushertest.Client
	ids  map[string]int // event id -> times received
	code int            // close code; 0: ended without a close frame
	done chan struct{}
}

// startReader subscribes c to channel and reads it on a goroutine; every
// event's data must be {"id": ...}.
func startReader(t *testing.T, c *pushertest.Client, channel string) *reader {
	t.Helper()
	c.SkipOther = true
	c.Subscribe(channel, "")
	r := &reader{c: c, ids: map[string]int{}, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for m := range c.Frames() {
			if pushertest.IsInternal(m.Event) {
				continue
			}
			var d struct {
				ID string `json:"id"`
			}
			if err := m.DecodeData(&d); err != nil || d.ID == "" {
				t.Errorf("socket %s: event %s with data %s", c.SocketID, m.Event, m.DataString())
				continue
			}
			r.ids[d.ID]++
		}
		if ce, ok := c.CloseFrame(); ok {
			r.code = int(ce.Code)
		}
	}()
	return r
}

// wait waits for the reader to see the end of its connection.
func (r *reader) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(bcWait):
		t.Fatalf("socket %s: not closed within %v", r.c.SocketID, bcWait)
	}
}

// TestSIGTERMUnderLoad: publishers send continuously over gRPC while
// subscribers read, and the process gets SIGTERM. Every event answered OK
// with delivered_to N reached exactly N subscribers before their 4200; the
// others were refused with an error, never answered OK and dropped; the
// process exits cleanly and promptly.
func TestSIGTERMUnderLoad(t *testing.T) {
	const subscribers, publishers = 8, 4
	// A flush interval keeps events queued (in the outbox and on the
	// sockets) while the drain closes the sockets.
	s := faultServer(t, "shutdownTimeout: 10s\nedge: {flushInterval: 50ms}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	readers := make([]*reader, subscribers)
	for i := range readers {
		readers[i] = startReader(t, pushertest.Dial(t, s.HTTPAddr, config.DevAppKey, config.DevAppSecret), "load")
	}

	type outcome struct {
		id        string
		delivered int64
		err       error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		sent     atomic.Int64
		signaled atomic.Bool
		wg       sync.WaitGroup
	)
	pctx := publishContext(t, ctx)
	for p := range publishers {
		bc := pushercmv1.NewBroadcastServiceClient(dial(t, s.GRPCAddr))
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				id := fmt.Sprintf("p%d-%d", p, n)
				resp, err := bc.SendEvent(pctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
					Id: id, Channels: []string{"load"}, Name: "tick", Payload: &pushercmv1.Event_Data{Data: `{"id":"` + id + `"}`},
				}})
				mu.Lock()
				outcomes = append(outcomes, outcome{id: id, delivered: resp.GetDeliveredTo(), err: err})
				mu.Unlock()
				sent.Add(1)
				if err != nil && signaled.Load() {
					return // refused: the server is going away
				}
			}
		})
	}

	// Under way: every publisher has had events answered.
	for sent.Load() < 600 {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d events sent", sent.Load())
		case <-time.After(10 * time.Millisecond):
		}
	}
	start := time.Now()
	signaled.Store(true)
	s.Signal(t, syscall.SIGTERM)
	code, err := s.Wait(ctx)
	exited := time.Since(start)
	wg.Wait()
	if err != nil || code != 0 {
		t.Fatalf("exit code %d, err %v", code, err)
	}
	if exited > 8*time.Second {
		t.Errorf("exit took %v after SIGTERM", exited)
	}

	received := map[string]int{}
	for i, r := range readers {
		r.wait(t)
		if r.code != protocol.CodeReconnect {
			t.Errorf("subscriber %d: close code %d, want %d", i, r.code, protocol.CodeReconnect)
		}
		for id, n := range r.ids {
			if n != 1 {
				t.Errorf("subscriber %d got %s %d times", i, id, n)
			}
			received[id]++
		}
	}
	var ok, refused int
	codesSeen := map[codes.Code]int{}
	for _, o := range outcomes {
		if o.err != nil {
			refused++
			codesSeen[status.Code(o.err)]++
			continue
		}
		ok++
		if got := int64(received[o.id]); got != o.delivered {
			t.Errorf("event %s: answered delivered_to %d, reached %d subscribers", o.id, o.delivered, got)
		}
	}
	t.Logf("%d events answered OK, %d refused %v; exit %v after SIGTERM", ok, refused, codesSeen, exited)
	if ok < 600 {
		t.Errorf("only %d events answered OK", ok)
	}
}

// dialNonReader opens a WebSocket to the edge with a small receive buffer,
// subscribes it to channel and from then on never reads.
func dialNonReader(t *testing.T, addr, channel string) net.Conn {
	t.Helper()
	d := ws.Dialer{Timeout: bcWait, NetDial: func(ctx context.Context, network, a string) (net.Conn, error) {
		nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			}); err != nil {
				return err
			}
			return serr
		}}
		return nd.DialContext(ctx, network, a)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), bcWait)
	defer cancel()
	conn, br, _, err := d.Dial(ctx, "ws://"+addr+"/app/"+config.DevAppKey+"?protocol=7&client=nonreader&version=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	_ = conn.SetDeadline(time.Now().Add(bcWait))
	next := func() protocol.Message {
		data, _, err := wsutil.ReadServerData(struct {
			io.Reader
			io.Writer
		}{r, conn})
		if err != nil {
			t.Fatal(err)
		}
		m, err := protocol.DecodeMessage(data)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := next(); m.Event != protocol.EventConnectionEstablished {
		t.Fatalf("first frame %s", m.Event)
	}
	sub, _ := json.Marshal(map[string]any{"event": protocol.EventSubscribe, "data": map[string]string{"channel": channel}})
	if err := wsutil.WriteClientText(conn, sub); err != nil {
		t.Fatal(err)
	}
	if m := next(); m.Event != protocol.EventSubscriptionSucceeded {
		t.Fatalf("subscription answered %s", m.Event)
	}
	_ = conn.SetDeadline(time.Time{})
	if br != nil && br.Buffered() > 0 {
		t.Fatal("frames after subscription_succeeded")
	}
	return conn
}

// metric reads one unlabelled sample from the ops listener's /metrics.
func metric(t *testing.T, opsAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + opsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return 0
}

// TestClientsThatStopReading: a few sockets that never read while others
// are fed. The readers get every event; the non-readers are evicted with
// 4100 as slow consumers (and cut, since they cannot take the close frame);
// at SIGTERM the readers get 4200 and the process exits promptly.
func TestClientsThatStopReading(t *testing.T) {
	const readersN, nonReadersN = 3, 2
	s := faultServer(t, "shutdownTimeout: 10s\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	readers := make([]*reader, readersN)
	for i := range readers {
		readers[i] = startReader(t, pushertest.Dial(t, s.HTTPAddr, config.DevAppKey, config.DevAppSecret), "big")
	}
	stuck := make([]net.Conn, nonReadersN)
	for i := range stuck {
		stuck[i] = dialNonReader(t, s.HTTPAddr, "big")
	}

	// 10 KB events until every non-reader was evicted: its queue passes
	// edge.WriteQueueBytes once the kernel buffers are full.
	bc := pushercmv1.NewBroadcastServiceClient(dial(t, s.GRPCAddr))
	pctx := publishContext(t, ctx)
	pad := strings.Repeat("x", 9000)
	var ids []string
	for metric(t, s.OpsAddr, "pushercm_slow_consumers_closed_total") < nonReadersN {
		if len(ids) >= 5000 {
			t.Fatalf("non-readers not evicted after %d events of 10 KB", len(ids))
		}
		// Batches of 100 KB, well within the readers' 256 KiB queues; a
		// scrape every 500 KB.
		for range 5 {
			req := &pushercmv1.SendBatchRequest{}
			for range 10 {
				id := fmt.Sprintf("e%d", len(ids))
				req.Events = append(req.Events, &pushercmv1.Event{
					Id: id, Channels: []string{"big"}, Name: "blob", Payload: &pushercmv1.Event_Data{Data: `{"id":"` + id + `","pad":"` + pad + `"}`},
				})
				ids = append(ids, id)
			}
			resp, err := bc.SendBatch(pctx, req)
			if err != nil {
				t.Fatalf("SendBatch: %v", err)
			}
			for _, r := range resp.Results {
				if r.Error != nil || r.Response.GetDeliveredTo() < readersN {
					t.Fatalf("event %d: %v, want delivered to at least the %d readers", r.Index, r, readersN)
				}
			}
		}
	}
	t.Logf("%d events of 10 KB until the %d non-readers were evicted", len(ids), nonReadersN)
	if n := metric(t, s.OpsAddr, "pushercm_slow_consumers_closed_total"); n != nonReadersN {
		t.Fatalf("%v slow consumers closed, want the %d non-readers", n, nonReadersN)
	}

	start := time.Now()
	s.Signal(t, syscall.SIGTERM)
	code, err := s.Wait(ctx)
	if err != nil || code != 0 {
		t.Fatalf("exit code %d, err %v", code, err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("exit took %v after SIGTERM", d)
	}
	for i, r := range readers {
		r.wait(t)
		if len(r.ids) != len(ids) {
			t.Errorf("reader %d got %d of %d events", i, len(r.ids), len(ids))
		}
		if r.code != protocol.CodeReconnect {
			t.Errorf("reader %d: close code %d, want %d", i, r.code, protocol.CodeReconnect)
		}
	}
	// The non-readers' connections are closed: reading them now ends.
	for i, c := range stuck {
		_ = c.SetReadDeadline(time.Now().Add(bcWait))
		if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
			t.Errorf("non-reader %d: %v", i, err)
		}
	}
}

// isReset reports a connection reset, which is how a socket cut with unread
// data ends.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}
