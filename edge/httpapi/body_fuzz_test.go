package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/milequest/pushercm/protocol"
)

// FuzzAuthenticatedBody signs every fuzzed body correctly, so that the body parsing
// behind authentication (triggerBody, decodeData, batch) is what gets fuzzed; FuzzRequest
// rarely gets past the signature. Properties: the answer is a JSON object with a known
// status, never an authentication or routing refusal; a refused request publishes
// nothing; an accepted one publishes only what the limits allow, only events and
// channels the body names, and at most one publish per event.
//
//	go test -fuzz=FuzzAuthenticatedBody ./edge/httpapi
func FuzzAuthenticatedBody(f *testing.F) {
	for _, s := range []string{
		`{"name":"e","data":"x","channel":"a"}`,
		`{"name":"e","data":"x","channel":"z","channels":["a","a","b"]}`,
		`{"name":"e","data":"x","channels":["a"],"socket_id":"123.456"}`,
		`{"name":"hello","data":"{\"a\":1}","channels":["#server-to-user-7"]}`,
		`{"name":"e","data":"x","channels":["presence-room","public","nobody"],"info":"user_count,subscription_count"}`,
		`{"name":"e","channels":["a"],"data":{"k": [1, 2]}}`,
		`{"name":"e","channels":["a"],"data":null}`,
		`{"name":"e","data":"x","channels":["ok","bad!"]}`,
		`{"name":"e","data":"x","channels":["#other"]}`,
		`{"name":`, ``,
	} {
		f.Add(false, []byte(s))
	}
	for _, s := range []string{
		`{"batch":[{"channel":"a","name":"e","data":"x"},{"channel":"private-b","name":"e","data":"x","socket_id":"1.2"},{"channel":"#server-to-user-9","name":"e","data":"x"}]}`,
		`{"batch":[{"channel":"presence-room","name":"e","data":"x","info":"user_count,subscription_count"},{"channel":"public","name":"e","data":"x"}]}`,
		`{"batch":[{"channel":"a","name":"e","data":"x"},{"channel":"bad channel","name":"e","data":"x"}]}`,
		`{"batch":[]}`, `{"batch":null}`, `[]`,
	} {
		f.Add(true, []byte(s))
	}
	known := map[int]bool{200: true, 400: true, 413: true}
	socketID := regexp.MustCompile(`\A\d+\.\d+\z`)
	lim := protocol.DefaultLimits()
	lim.MaxChannelNameLength = protocol.DefaultMaxChannelNameLength

	f.Fuzz(func(t *testing.T, batch bool, body []byte) {
		path := "/apps/3/events"
		if batch {
			path = "/apps/3/batch_events"
		}
		be := newFake()
		be.seedState()
		h := newHandler(t, be, nil)
		req := httptest.NewRequest(http.MethodPost, signedURL(http.MethodPost, path, nil, body, secret, fixedNow), bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		var obj map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &obj); err != nil || obj == nil {
			t.Fatalf("status %d body %q is not a JSON object", rec.Code, rec.Body.Bytes())
		}
		if !known[rec.Code] {
			t.Fatalf("status %d for a correctly signed %s: %s", rec.Code, path, rec.Body.Bytes())
		}
		pub, sends, _ := be.snapshot()
		if rec.Code != 200 {
			if len(pub) != 0 || len(sends) != 0 {
				t.Fatalf("refused with %d but published %+v %+v", rec.Code, pub, sends)
			}
			return
		}
		// What the body names, read independently of the handler.
		type item struct {
			Name     string   `json:"name"`
			Channels []string `json:"channels"`
			Channel  string   `json:"channel"`
		}
		var items []item
		if batch {
			var b struct {
				Batch []item `json:"batch"`
			}
			if err := json.Unmarshal(body, &b); err != nil {
				t.Fatalf("accepted a batch encoding/json cannot read: %v", err)
			}
			items = b.Batch
		} else {
			var it item
			if err := json.Unmarshal(body, &it); err != nil {
				t.Fatalf("accepted an event encoding/json cannot read: %v", err)
			}
			items = []item{it}
		}
		if len(items) == 0 || len(items) > lim.MaxBatchSize || len(pub) > len(items) || len(sends) > len(items)*lim.MaxChannelsPerTrigger {
			t.Fatalf("%d events in the body, %d publishes, %d user sends", len(items), len(pub), len(sends))
		}
		names := func(it item) []string {
			if len(it.Channels) == 0 && it.Channel != "" {
				return []string{it.Channel}
			}
			return it.Channels
		}
		for _, m := range pub {
			if m.Event == "" || len(m.Event) > lim.MaxEventNameLength || len(m.Data) > lim.MaxPayloadBytes {
				t.Fatalf("published past the limits: event %q, %d bytes of data", m.Event, len(m.Data))
			}
			if len(m.Channels) == 0 || len(m.Channels) > lim.MaxChannelsPerTrigger {
				t.Fatalf("published to %d channels", len(m.Channels))
			}
			if m.ExcludeSocketID != "" && !socketID.MatchString(m.ExcludeSocketID) {
				t.Fatalf("excluded socket id %q", m.ExcludeSocketID)
			}
			seen := map[string]bool{}
			for _, c := range m.Channels {
				ch, err := protocol.ParseChannel(c, lim.MaxChannelNameLength)
				if err != nil || ch.Kind == protocol.KindServerToUser || seen[c] {
					t.Fatalf("published to channel %q (%v, repeated %v)", c, err, seen[c])
				}
				seen[c] = true
			}
			if !slices.ContainsFunc(items, func(it item) bool {
				return it.Name == m.Event && !slices.ContainsFunc(m.Channels, func(c string) bool { return !slices.Contains(names(it), c) })
			}) {
				t.Fatalf("published %+v, which the body does not name", m)
			}
		}
		for _, s := range sends {
			if s.UserID == "" || len(s.UserID) > lim.MaxUserIDLength || len(s.Data) > lim.MaxPayloadBytes {
				t.Fatalf("sent to user %q past the limits", s.UserID)
			}
			if !slices.ContainsFunc(items, func(it item) bool {
				return it.Name == s.Event && slices.Contains(names(it), "#server-to-user-"+s.UserID)
			}) {
				t.Fatalf("sent %+v, which the body does not name", s)
			}
		}
		if strings.Contains(rec.Body.String(), `"error"`) {
			t.Fatalf("200 with an error body %s", rec.Body.Bytes())
		}
	})
}
