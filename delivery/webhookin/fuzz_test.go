package webhookin_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	pushersdk "github.com/pusher/pusher-http-go/v5"

	"github.com/milequest/pushercm/delivery/webhookin"
)

// FuzzReceiver posts fuzzed webhook bodies, each correctly signed and once more with a
// mutated signature. Properties: a signed body is never refused as unauthenticated and
// never fails the server; a body refused for any reason changes nothing; an accepted
// body leaves the view that Pusher's webhook semantics give for its events; a mutated
// or foreign signature is always 401 and changes nothing.
//
//	go test -fuzz=FuzzReceiver ./delivery/webhookin
func FuzzReceiver(f *testing.F) {
	for _, evs := range [][]ev{
		{{Name: "member_added", Channel: "presence-a", UserID: "u1"}},
		{{Name: "channel_occupied", Channel: "presence-a"}, {Name: "member_added", Channel: "presence-a", UserID: "u2"},
			{Name: "channel_occupied", Channel: "public-b"}, {Name: "client_event", Channel: "presence-a", Event: "client-x", Data: "{}"}},
		{{Name: "member_added", Channel: "presence-a", UserID: "u1"}, {Name: "member_removed", Channel: "presence-a", UserID: "u1"},
			{Name: "channel_vacated", Channel: "presence-a"}, {Name: "channel_vacated", Channel: "never-occupied"}},
		{{Name: "member_added", Channel: "presence-a", UserID: "u1"}, {Name: "channel_vacated", Channel: "presence-a"}},
	} {
		f.Add(body(evs...), "", uint8(0))
	}
	f.Add([]byte(`{"time_ms":"x","events":{}}`), "00", uint8(7))
	f.Add([]byte(`{"events":[{"name":"member_added","channel":"p","user_id":7}]}`), "", uint8(1))
	f.Add([]byte(``), "", uint8(2))

	f.Fuzz(func(t *testing.T, b []byte, sig string, pos uint8) {
		good := sign(secret, b)

		// A foreign or mutated signature changes nothing.
		bad := []byte(good)
		i := int(pos) % len(bad)
		bad[i] = "0123456789abcdef"[(strings.IndexByte("0123456789abcdef", bad[i])+1)%16]
		for _, s := range []string{string(bad), sig} {
			if strings.EqualFold(s, good) {
				continue
			}
			r := newReceiver(t)
			if code := postCode(r, s, b); code != http.StatusUnauthorized && code != http.StatusRequestEntityTooLarge {
				t.Fatalf("signature %q: status %d", s, code)
			}
			unchanged(t, r)
		}

		r := newReceiver(t)
		code := postCode(r, good, b)
		switch {
		case code == http.StatusUnauthorized || code >= 500:
			t.Fatalf("correctly signed body: status %d", code)
		case code != http.StatusOK:
			unchanged(t, r)
			return
		}
		var hook pushersdk.Webhook
		if err := json.Unmarshal(b, &hook); err != nil {
			t.Fatalf("accepted a body encoding/json cannot read: %v", err)
		}
		if st := r.Stats(); st.Received != 1 || st.Rejected != 0 || st.Events != uint64(len(hook.Events)) {
			t.Fatalf("stats %+v for %d events", st, len(hook.Events))
		}
		if got, want := r.Channels(""), view(hook.Events); !reflect.DeepEqual(got, want) {
			t.Fatalf("view\n got %+v\nwant %+v", got, want)
		}
	})
}

func postCode(r *webhookin.Receiver, sig string, b []byte) int {
	req := httptest.NewRequest(http.MethodPost, "/pusher/webhooks", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Pusher-Key", key)
	req.Header.Set("X-Pusher-Signature", sig)
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	return rec.Code
}

func unchanged(t *testing.T, r *webhookin.Receiver) {
	t.Helper()
	if st := r.Stats(); st.Received != 0 || st.Events != 0 || st.OccupiedChannels != 0 || st.PresenceMembers != 0 || len(r.Channels("")) != 0 {
		t.Fatalf("a refused webhook changed the receiver: %+v", st)
	}
}

// view is the occupancy that Pusher's webhooks describe: member_added implies
// channel_occupied, channel_vacated ends every membership, other events change nothing.
func view(events []pushersdk.WebhookEvent) []webhookin.Channel {
	occ := map[string][]string{}
	for _, e := range events {
		switch e.Name {
		case "channel_occupied":
			if _, ok := occ[e.Channel]; !ok {
				occ[e.Channel] = []string{}
			}
		case "channel_vacated":
			delete(occ, e.Channel)
		case "member_added":
			if !slices.Contains(occ[e.Channel], e.UserID) {
				occ[e.Channel] = append(occ[e.Channel], e.UserID)
			}
		case "member_removed":
			if us, ok := occ[e.Channel]; ok {
				occ[e.Channel] = slices.DeleteFunc(us, func(u string) bool { return u == e.UserID })
			}
		}
	}
	out := []webhookin.Channel{}
	for name, us := range occ {
		slices.Sort(us)
		out = append(out, webhookin.Channel{Name: name, Users: us})
	}
	slices.SortFunc(out, func(a, b webhookin.Channel) int { return strings.Compare(a.Name, b.Name) })
	return out
}
