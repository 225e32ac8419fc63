package httpauth

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/milequest/pushercm/authz"
)

// formCases seed both the table test and the fuzz target.
var formCases = []struct {
	name        string
	body        string
	needChannel bool
	want        authForm
	wantField   string // "" when the body parses
}{
	{name: "pusher-js channel auth", body: "socket_id=123.456&channel_name=private-user-u1", needChannel: true,
		want: authForm{SocketID: "123.456", Channel: "private-user-u1"}},
	{name: "extra params ignored", body: "socket_id=1.2&channel_name=presence-team-t1&csrf=abc&x=", needChannel: true,
		want: authForm{SocketID: "1.2", Channel: "presence-team-t1"}},
	{name: "encoded channel", body: "socket_id=1.2&channel_name=private-a%3Bb%40c", needChannel: true,
		want: authForm{SocketID: "1.2", Channel: "private-a;b@c"}},
	{name: "user_info", body: "socket_id=1.2&channel_name=presence-x&user_info=%7B%22a%22%3A1%7D", needChannel: true,
		want: authForm{SocketID: "1.2", Channel: "presence-x", UserInfo: []byte(`{"a":1}`)}},
	{name: "user auth", body: "socket_id=1.2", want: authForm{SocketID: "1.2"}},
	{name: "empty body", body: "", needChannel: true, wantField: "socket_id"},
	{name: "no channel", body: "socket_id=1.2", needChannel: true, wantField: "channel_name"},
	{name: "empty socket id", body: "socket_id=&channel_name=private-x", needChannel: true, wantField: "socket_id"},
	{name: "two socket ids", body: "socket_id=1.2&socket_id=3.4&channel_name=private-x", needChannel: true, wantField: "socket_id"},
	{name: "two channels", body: "socket_id=1.2&channel_name=private-a&channel_name=private-b", needChannel: true, wantField: "channel_name"},
	{name: "two user_infos", body: "socket_id=1.2&channel_name=presence-a&user_info=%7B%7D&user_info=%7B%7D", needChannel: true, wantField: "user_info"},
	{name: "bad escape", body: "socket_id=1.2&channel_name=private-%zz", needChannel: true, wantField: "form"},
	{name: "semicolon separator", body: "socket_id=1.2;channel_name=private-x", needChannel: true, wantField: "form"},
	{name: "too many fields", body: "socket_id=1.2" + strings.Repeat("&a=b", maxFormFields), needChannel: true, wantField: "form"},
}

func TestParseForm(t *testing.T) {
	for _, tc := range formCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseForm([]byte(tc.body), tc.needChannel)
			if tc.wantField != "" {
				var ae *authz.ArgumentError
				if !errors.As(err, &ae) || ae.Field != tc.wantField || !errors.Is(err, authz.ErrInvalidArgument) {
					t.Fatalf("err %v, want ArgumentError on %s", err, tc.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.SocketID != tc.want.SocketID || got.Channel != tc.want.Channel || string(got.UserInfo) != string(tc.want.UserInfo) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzParseForm: any body either parses into values that round-trip
// through url encoding, or fails with an ArgumentError; it never panics.
func FuzzParseForm(f *testing.F) {
	for _, tc := range formCases {
		f.Add([]byte(tc.body), tc.needChannel)
	}
	f.Fuzz(func(t *testing.T, body []byte, needChannel bool) {
		got, err := parseForm(body, needChannel)
		if err != nil {
			var ae *authz.ArgumentError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an ArgumentError", err)
			}
			return
		}
		if got.SocketID == "" || (needChannel && got.Channel == "") {
			t.Fatalf("accepted without required fields: %+v", got)
		}
		v := url.Values{"socket_id": {got.SocketID}}
		if got.Channel != "" {
			v.Set("channel_name", got.Channel)
		}
		if got.UserInfo != nil {
			v.Set("user_info", string(got.UserInfo))
		}
		again, err := parseForm([]byte(v.Encode()), needChannel)
		if err != nil || again.SocketID != got.SocketID || again.Channel != got.Channel || string(again.UserInfo) != string(got.UserInfo) {
			t.Fatalf("round trip of %+v gave %+v, %v", got, again, err)
		}
	})
}
