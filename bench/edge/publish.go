package edgebench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// Publisher triggers events through the signed Pusher HTTP API.
type Publisher struct {
	t    Target
	http *http.Client
}

// NewPublisher returns a publisher with a keep-alive HTTP client.
func NewPublisher(t Target) *Publisher {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64, IdleConnTimeout: time.Minute}
	return &Publisher{t: t, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Close drops the publisher's idle keep-alive connections.
func (p *Publisher) Close() { p.http.CloseIdleConnections() }

// Event is one event of a batch.
type Event struct{ Channel, Name, Data string }

// Batch publishes up to 10 events in one POST /batch_events (one event uses /events).
func (p *Publisher) Batch(ctx context.Context, evs []Event) error {
	var b strings.Builder
	path := "/apps/" + p.t.AppID + "/batch_events"
	if len(evs) == 1 {
		path = "/apps/" + p.t.AppID + "/events"
		e := evs[0]
		b.WriteString(`{"name":` + strconv.Quote(e.Name) + `,"channels":[` + strconv.Quote(e.Channel) + `],"data":` + strconv.Quote(e.Data) + `}`)
	} else {
		b.WriteString(`{"batch":[`)
		for i, e := range evs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"name":` + strconv.Quote(e.Name) + `,"channel":` + strconv.Quote(e.Channel) + `,"data":` + strconv.Quote(e.Data) + `}`)
		}
		b.WriteString(`]}`)
	}
	body := []byte(b.String())
	q := protocol.SignRequest(p.t.Key, p.t.Secret, "POST", path, nil, body, time.Now())
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+p.t.Addr+path+"?"+protocol.EncodeQuery(q), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	rb, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("publish: %d %s", resp.StatusCode, rb)
	}
	return nil
}

// Now is the timestamp payload clients parse.
func Now() string { return strconv.FormatInt(time.Now().UnixNano(), 10) }
