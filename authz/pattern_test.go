package authz

import (
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		channel string
		match   bool
		caps    map[string]string
	}{
		{"exact", "private-lobby", "private-lobby", true, nil},
		{"exact mismatch", "private-lobby", "private-lobby2", false, nil},
		{"capture rest", "private-user-{userId}", "private-user-42", true, map[string]string{"userId": "42"}},
		{"capture with dashes", "private-user-{userId}", "private-user-3f2a-99-x", true, map[string]string{"userId": "3f2a-99-x"}},
		{"capture empty refused", "private-user-{userId}", "private-user-", false, nil},
		{"prefix mismatch", "private-user-{userId}", "presence-user-1", false, nil},
		{"star", "private-admin-*", "private-admin-ops", true, nil},
		{"star empty refused", "private-admin-*", "private-admin-", false, nil},
		{"middle capture lazy", "presence-team-{teamId}-chat", "presence-team-a-b-chat", true, map[string]string{"teamId": "a-b"}},
		{"middle capture lazy first literal", "private-{a}-x-{b}", "private-1-x-2-x-3", true, map[string]string{"a": "1", "b": "2-x-3"}},
		{"suffix mismatch", "presence-team-{teamId}-chat", "presence-team-a-chats", false, nil},
		{"two captures", "private-org-{org}-team-{team}", "private-org-acme-team-blue", true, map[string]string{"org": "acme", "team": "blue"}},
		{"two captures missing second", "private-org-{org}-team-{team}", "private-org-acme-team-", false, nil},
		{"overlapping literal", "private-{a}--{b}", "private-x---y", true, map[string]string{"a": "x", "b": "-y"}},
		{"leading star", "*-secret", "private-x-secret", true, nil},
		{"star and capture", "private-*-{id}", "private-a-b-c", true, map[string]string{"id": "b-c"}},
		{"too short", "private-*-{id}", "private-a-", false, nil},
		{"exact needs full", "private-a", "private-ab", false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := compilePattern(tc.pattern)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			var caps captures
			got := p.match(tc.channel, &caps)
			if got != tc.match {
				t.Fatalf("match(%q, %q) = %v, want %v", tc.pattern, tc.channel, got, tc.match)
			}
			for name, want := range tc.caps {
				v, ok := p.capture(name, tc.channel, &caps)
				if !ok || v != want {
					t.Errorf("capture %s = %q (%v), want %q", name, v, ok, want)
				}
			}
		})
	}
}

func TestPatternCompileErrors(t *testing.T) {
	bad := []struct{ name, pattern string }{
		{"empty", ""},
		{"adjacent wildcards", "private-{a}{b}"},
		{"double star", "private-**"},
		{"star then capture", "private-*{a}"},
		{"unclosed", "private-{a"},
		{"stray close", "private-a}"},
		{"bad capture name", "private-{1a}"},
		{"empty capture", "private-{}"},
		{"duplicate capture", "private-{a}-{a}"},
		{"invalid char", "private-a b"},
		{"hash", "#server-to-user-{id}"},
		{"too many wildcards", "p" + strings.Repeat("-*", maxWildcards+1)},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := compilePattern(tc.pattern); err == nil {
				t.Fatalf("compilePattern(%q) succeeded, want error", tc.pattern)
			}
		})
	}
}

// naiveMatch is a reference matcher: it tries every split (memoised, so it
// stays polynomial), used to cross-check the linear matcher in the fuzz
// target.
func naiveMatch(p *pattern, name string) bool {
	if p.exact {
		return name == p.prefix
	}
	if !strings.HasPrefix(name, p.prefix) {
		return false
	}
	lits := append(append([]string{}, p.middles...), p.suffix)
	type key struct{ i, pos int }
	memo := map[key]bool{}
	var rec func(i, pos int) bool
	rec = func(i, pos int) bool {
		if v, ok := memo[key{i, pos}]; ok {
			return v
		}
		ok := false
		// wildcard i takes name[pos:pos+k], k >= 1, then literal lits[i]
		for k := 1; pos+k <= len(name) && !ok; k++ {
			after := name[pos+k:]
			if !strings.HasPrefix(after, lits[i]) {
				continue
			}
			next := pos + k + len(lits[i])
			if i == len(p.wild)-1 {
				ok = next == len(name)
			} else {
				ok = rec(i+1, next)
			}
		}
		memo[key{i, pos}] = ok
		return ok
	}
	return rec(0, len(p.prefix))
}

func FuzzPatternMatch(f *testing.F) {
	seeds := [][2]string{
		{"private-user-{userId}", "private-user-42"},
		{"presence-team-{teamId}-chat", "presence-team-a-b-chat"},
		{"private-{a}-x-{b}", "private-1-x-2-x-3"},
		{"private-*-{id}", "private-a-b-c"},
		{"*-secret", "private-x-secret"},
		{"private-{a}--{b}", "private-x---y"},
		{"private-admin-*", "private-admin-"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, name string) {
		p, err := compilePattern(pat)
		if err != nil {
			return
		}
		if len(name) > 256 {
			return
		}
		var caps captures
		got := p.match(name, &caps)
		if want := naiveMatch(p, name); got != want {
			t.Fatalf("match(%q, %q) = %v, reference says %v", pat, name, got, want)
		}
		if !got {
			return
		}
		// Captures must be non-empty, in order, inside the name, and
		// substituting them back must rebuild the name.
		var b strings.Builder
		b.WriteString(p.prefix)
		prevEnd := int32(len(p.prefix))
		ci := 0
		for i, w := range p.wild {
			if w < 0 {
				// recover the star's text from the surrounding spans is not
				// possible in general; only check capture-only patterns.
				return
			}
			s := caps[w]
			if s.start != prevEnd || s.end <= s.start || int(s.end) > len(name) {
				t.Fatalf("capture %d span %v bad (prev end %d) for %q / %q", ci, s, prevEnd, pat, name)
			}
			b.WriteString(name[s.start:s.end])
			if i < len(p.middles) {
				b.WriteString(p.middles[i])
				prevEnd = s.end + int32(len(p.middles[i]))
			}
			ci++
		}
		b.WriteString(p.suffix)
		if b.String() != name {
			t.Fatalf("captures rebuild %q, want %q", b.String(), name)
		}
	})
}
