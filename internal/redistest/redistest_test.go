package redistest

import (
	"strings"
	"testing"
)

func TestPrefixKeysAreDeletedAtCleanup(t *testing.T) {
	addr := Addr(t)
	var prefix string
	t.Run("writer", func(t *testing.T) {
		prefix = Prefix(t)
		for _, k := range []string{"a", "b", "c:d"} {
			if _, err := Do(addr, "SET", prefix+":"+k, "v"); err != nil {
				t.Fatal(err)
			}
		}
		n, err := Do(addr, "EXISTS", prefix+":a", prefix+":b", prefix+":c:d")
		if err != nil || n != int64(3) {
			t.Fatalf("EXISTS = %v, %v; want 3", n, err)
		}
	})
	v, err := Do(addr, "EVAL", `return #redis.call("KEYS", ARGV[1])`, "0", prefix+"*")
	if err != nil || v != int64(0) {
		t.Fatalf("keys left under %s: %v, %v", prefix, v, err)
	}
}

func TestPrefixesDiffer(t *testing.T) {
	a, b := Prefix(t), Prefix(t)
	if a == b || !strings.Contains(a, "TestPrefixesDiffer") {
		t.Fatalf("prefixes %q and %q", a, b)
	}
}

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	if err := Ping(s.Addr); err != nil {
		t.Fatal(err)
	}
	if _, err := Do(s.Addr, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if Ping(s.Addr) == nil {
		t.Fatal("stopped server still answers")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if v, err := Do(s.Addr, "GET", "k"); err != nil || v != nil {
		t.Fatalf("restarted server kept k: %v, %v", v, err)
	}
}

func TestErrorReply(t *testing.T) {
	if _, err := Do(Addr(t), "NOSUCHCOMMAND"); err == nil || !strings.HasPrefix(err.Error(), "ERR") {
		t.Fatalf("err = %v, want a Redis ERR reply", err)
	}
}

func TestCommandCalls(t *testing.T) {
	s := Start(t)
	before, err := CommandCalls(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := Ping(s.Addr); err != nil {
			t.Fatal(err)
		}
	}
	after, err := CommandCalls(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if got := after["ping"] - before["ping"]; got != 3 {
		t.Fatalf("ping calls grew by %d, want 3 (before %v, after %v)", got, before, after)
	}
}
