package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeMessage(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		event    string
		data     string
		wantErr  error
		subChan  string
		subAuth  string
		subCData string
	}{
		{"subscribe object", `{"event":"pusher:subscribe","data":{"auth":"","channel":"x"}}`, EventSubscribe, `{"auth":"","channel":"x"}`, nil, "x", "", ""},
		{"subscribe string", `{"event":"pusher:subscribe","data":"{\"auth\":\"k:s\",\"channel\":\"private-x\"}"}`, EventSubscribe, `{"auth":"k:s","channel":"private-x"}`, nil, "private-x", "k:s", ""},
		{"presence channel_data kept exact", `{"event":"pusher:subscribe","data":{"auth":"k:s","channel_data":"{\"user_id\":7, \"user_info\":{}}","channel":"presence-x"}}`, EventSubscribe, "", nil, "presence-x", "k:s", `{"user_id":7, "user_info":{}}`},
		{"ping", `{"event":"pusher:ping","data":{}}`, EventPing, `{}`, nil, "", "", ""},
		{"ping no data", `{"event":"pusher:ping"}`, EventPing, "", nil, "", "", ""},
		{"not json", `nope`, "", "", ErrFrame, "", "", ""},
		{"array", `[]`, "", "", ErrFrame, "", "", ""},
		{"no event", `{"data":{}}`, "", "", ErrFrame, "", "", ""},
		{"numeric event", `{"event":1}`, "", "", ErrFrame, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeMessage([]byte(tc.in))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err=%v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Event != tc.event {
				t.Fatalf("event %q", m.Event)
			}
			if tc.data != "" && m.DataString() != tc.data {
				t.Fatalf("data %q", m.DataString())
			}
			if tc.subChan != "" {
				var sd SubscribeData
				if err := m.DecodeData(&sd); err != nil {
					t.Fatal(err)
				}
				if sd.Channel != tc.subChan || sd.Auth != tc.subAuth || string(sd.ChannelData) != tc.subCData {
					t.Fatalf("sub %+v", sd)
				}
			}
		})
	}
}

// presenceDataCases also seed FuzzParsePresenceData.
var presenceDataCases = []struct {
	name, in, id, info string
	wantErr            error
}{
	{"number id", `{"user_id":10,"user_info":{"name":"A"}}`, "10", `{"name":"A"}`, nil},
	{"string id", `{"user_id":"u1"}`, "u1", "", nil},
	{"null info", `{"user_id":"u1","user_info":null}`, "u1", "", nil},
	{"missing id", `{"user_info":{}}`, "", "", ErrPresenceData},
	{"empty id", `{"user_id":""}`, "", "", ErrPresenceData},
	{"object id", `{"user_id":{}}`, "", "", ErrPresenceData},
	{"not json", `x`, "", "", ErrPresenceData},
}

func TestParsePresenceData(t *testing.T) {
	for _, tc := range presenceDataCases {
		t.Run(tc.name, func(t *testing.T) {
			pd, err := ParsePresenceData(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err != nil || pd.UserID != tc.id || string(pd.UserInfo) != tc.info {
				t.Fatalf("got %+v %v", pd, err)
			}
		})
	}
}

func TestEncodeFrames(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"event", EncodeEvent("e", "c", `{"a":"<b>"}`, ""), `{"event":"e","channel":"c","data":"{\"a\":\"<b>\"}"}`},
		{"event user", EncodeEvent("client-hi", "presence-x", `{"a":1}`, "2"), `{"event":"client-hi","channel":"presence-x","data":"{\"a\":1}","user_id":"2"}`},
		{"established", EncodeConnectionEstablished("1.2", 120), `{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}`},
		{"error null", EncodeError(0, "m", "private-x"), `{"event":"pusher:error","channel":"private-x","data":{"code":null,"message":"m"}}`},
		{"error code", EncodeError(4001, "m", ""), `{"event":"pusher:error","data":{"code":4001,"message":"m"}}`},
		{"cache miss", EncodeNoData(EventCacheMiss, "cache-x"), `{"event":"pusher:cache_miss","channel":"cache-x"}`},
		{"sub error", EncodeSubscriptionError("private-x", SubErrAuth, "no", 401), `{"event":"pusher:subscription_error","channel":"private-x","data":{"type":"AuthError","error":"no","status":401}}`},
		{"controls", AppendJSONString(nil, "a\x00\n\"\\\u2028\xff"), `"a\u0000\n\"\\\u2028\ufffd"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.got) != tc.want {
				t.Fatalf("got  %s\nwant %s", tc.got, tc.want)
			}
			if !json.Valid(tc.got) {
				t.Fatal("invalid JSON")
			}
		})
	}
	d := PresenceSucceededData([]Member{{UserID: "1", UserInfo: json.RawMessage(`{"name":"A"}`)}, {UserID: "2"}})
	var v struct {
		Presence struct {
			IDs   []string                   `json:"ids"`
			Hash  map[string]json.RawMessage `json:"hash"`
			Count int                        `json:"count"`
		} `json:"presence"`
	}
	if err := json.Unmarshal([]byte(d), &v); err != nil || v.Presence.Count != 2 || len(v.Presence.IDs) != 2 || string(v.Presence.Hash["1"]) != `{"name":"A"}` {
		t.Fatalf("presence data %s %v", d, err)
	}
}

// watchlistCases also seed FuzzParseUserData and FuzzParseWatchlist.
var watchlistCases = []struct {
	name, in string
	want     []string
	wantErr  bool
}{
	{"absent", `{"id":"1"}`, []string{}, false},
	{"strings", `{"id":"1","watchlist":["a","b","a"]}`, []string{"a", "b"}, false},
	{"numbers", `{"id":"1","watchlist":[2,3]}`, []string{"2", "3"}, false},
	{"mixed", `{"id":"1","watchlist":["x",4]}`, []string{"x", "4"}, false},
	{"object", `{"id":"1","watchlist":[{}]}`, nil, true},
}

func TestParseWatchlist(t *testing.T) {
	for _, tc := range watchlistCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseWatchlist(tc.in)
			if tc.wantErr != (err != nil) {
				t.Fatalf("err %v", err)
			}
			if !tc.wantErr && strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v want %v", got, tc.want)
			}
		})
	}
	if d := WatchlistData([]string{"1"}, nil); d != `{"events":[{"name":"online","user_ids":["1"]}]}` {
		t.Fatalf("data %s", d)
	}
	if d := WatchlistData([]string{"1"}, []string{"2", "3"}); !json.Valid([]byte(d)) {
		t.Fatalf("invalid %s", d)
	}
}
