package delivery

import (
	"errors"
	"strings"
	"testing"

	"github.com/milequest/pushercm/protocol"
)

func validEvent() Event {
	return Event{ID: "evt-1", Channels: []string{"team-1", "presence-team-1"}, Name: "activity", Data: `{"km":3}`}
}

func TestValidateEvent(t *testing.T) {
	many := make([]string, 101)
	for i := range many {
		many[i] = "c" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
	}
	tests := []struct {
		name   string
		mutate func(*Event)
		fields []string // expected violation paths, in order
	}{
		{"valid", func(*Event) {}, nil},
		{"valid private encrypted and cache", func(e *Event) { e.Channels = []string{"private-encrypted-x", "cache-y"} }, nil},
		{"valid 100 channels", func(e *Event) { e.Channels = many[:100] }, nil},
		{"valid max payload", func(e *Event) { e.Data = strings.Repeat("a", 10240) }, nil},
		{"valid socket id", func(e *Event) { e.ExcludeSocketID = "123.456" }, nil},
		{"no channels", func(e *Event) { e.Channels = nil }, []string{"event.channels"}},
		{"101 channels", func(e *Event) { e.Channels = many }, []string{"event.channels"}},
		{"empty channel name", func(e *Event) { e.Channels = []string{"ok", ""} }, []string{"event.channels[1]"}},
		{"bad channel chars", func(e *Event) { e.Channels = []string{"a", "b", "bad channel!"} }, []string{"event.channels[2]"}},
		{"channel too long", func(e *Event) { e.Channels = []string{strings.Repeat("a", 165)} }, []string{"event.channels[0]"}},
		{"reserved # channel", func(e *Event) { e.Channels = []string{"#foo"} }, []string{"event.channels[0]"}},
		{"server-to-user channel", func(e *Event) { e.Channels = []string{"#server-to-user-1"} }, []string{"event.channels[0]"}},
		{"duplicate channel", func(e *Event) { e.Channels = []string{"a", "b", "a"} }, []string{"event.channels[2]"}},
		{"duplicate among many channels", func(e *Event) {
			e.Channels = append(append([]string(nil), many[:20]...), many[3])
		}, []string{"event.channels[20]"}},
		{"empty name", func(e *Event) { e.Name = "" }, []string{"event.name"}},
		{"name too long", func(e *Event) { e.Name = strings.Repeat("n", 201) }, []string{"event.name"}},
		{"reserved name", func(e *Event) { e.Name = "pusher:subscribe" }, []string{"event.name"}},
		{"reserved internal name", func(e *Event) { e.Name = "pusher_internal:member_added" }, []string{"event.name"}},
		{"payload too large", func(e *Event) { e.Data = strings.Repeat("a", 10241) }, []string{"event.data"}},
		{"bad socket id", func(e *Event) { e.ExcludeSocketID = "abc" }, []string{"event.exclude_socket_id"}},
		{"socket id missing part", func(e *Event) { e.ExcludeSocketID = "123." }, []string{"event.exclude_socket_id"}},
		{"id too long", func(e *Event) { e.ID = strings.Repeat("i", 129) }, []string{"event.id"}},
		{"user id too long", func(e *Event) { e.UserID = strings.Repeat("u", 129) }, []string{"event.user_id"}},
		{"every violation at once", func(e *Event) {
			e.Channels = []string{"ok", "bad!"}
			e.Name = ""
			e.Data = strings.Repeat("a", 10241)
			e.ExcludeSocketID = "x"
		}, []string{"event.channels[1]", "event.name", "event.data", "event.exclude_socket_id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := validEvent()
			tc.mutate(&e)
			err := ValidateEvent(e, protocol.Limits{})
			if tc.fields == nil {
				if err != nil {
					t.Fatalf("ValidateEvent() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidateEvent() = %v, want ErrInvalid", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError", err)
			}
			if got := fields(ve); strings.Join(got, ",") != strings.Join(tc.fields, ",") {
				t.Fatalf("violations = %v, want %v", got, tc.fields)
			}
			for _, v := range ve.Violations {
				if v.Description == "" {
					t.Errorf("violation %s has no description", v.Field)
				}
			}
		})
	}
}

func TestValidateEventCustomLimits(t *testing.T) {
	e := validEvent()
	e.Data = strings.Repeat("a", 20)
	err := ValidateEvent(e, protocol.Limits{MaxPayloadBytes: 10, MaxChannelsPerTrigger: 1})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	if got := strings.Join(fields(ve), ","); got != "event.channels,event.data" {
		t.Fatalf("violations = %s", got)
	}
}

func TestValidateSendToUser(t *testing.T) {
	tests := []struct {
		name               string
		user, evName, data string
		fields             []string
	}{
		{"valid", "u-1", "note", "{}", nil},
		{"no user", "", "note", "{}", []string{"user_id"}},
		{"bad user chars", "u 1", "note", "{}", []string{"user_id"}},
		{"user too long", strings.Repeat("u", 129), "note", "{}", []string{"user_id"}},
		{"no name", "u", "", "{}", []string{"name"}},
		{"big data", "u", "n", strings.Repeat("d", 10241), []string{"data"}},
		{"all", "", "", strings.Repeat("d", 10241), []string{"user_id", "name", "data"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateSendToUser(tc.user, tc.evName, tc.data, protocol.Limits{})
			if tc.fields == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v", err)
			}
			if got := strings.Join(fields(ve), ","); got != strings.Join(tc.fields, ",") {
				t.Fatalf("violations = %s, want %v", got, tc.fields)
			}
		})
	}
}

func TestValidationErrorWithPrefix(t *testing.T) {
	ve := &ValidationError{Violations: []FieldViolation{{"event.channels[2]", "x"}, {"event.name", "y"}}}
	got := ve.WithPrefix("event", "events[3]")
	if f := strings.Join(fields(got), ","); f != "events[3].channels[2],events[3].name" {
		t.Fatalf("got %s", f)
	}
	if ve.Violations[0].Field != "event.channels[2]" {
		t.Fatal("WithPrefix modified the receiver")
	}
}

func fields(ve *ValidationError) []string {
	var out []string
	for _, v := range ve.Violations {
		out = append(out, v.Field)
	}
	return out
}

func FuzzValidateEvent(f *testing.F) {
	f.Add("team-1", "activity", "{}", "1.2", "id")
	f.Add("#server-to-user-1", "pusher:x", "", "abc", "")
	f.Fuzz(func(t *testing.T, ch, name, data, sock, id string) {
		e := Event{ID: id, Channels: []string{ch}, Name: name, Data: data, ExcludeSocketID: sock}
		err := ValidateEvent(e, protocol.Limits{})
		var ve *ValidationError
		if err != nil && (!errors.As(err, &ve) || len(ve.Violations) == 0) {
			t.Fatalf("error without violations: %v", err)
		}
	})
}
