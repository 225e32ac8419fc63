package authz

import (
	"errors"
	"fmt"
	"strings"

	"github.com/milequest/pushercm/protocol"
)

// A pattern is literal channel-name text with two kinds of wildcard:
//
//   - one or more characters, not captured
//     {name}   one or more characters, captured as segments.name
//
// Wildcards must be separated by literal text ("{a}{b}" and "**" are refused)
// so that a match is unambiguous: each wildcard ends at the first occurrence
// of the literal that follows it (leftmost, like a lazy regexp), and the last
// wildcard takes the rest of the name. Matching is a few strings.Index calls,
// linear in the channel name, with no regexp and no allocation.
type pattern struct {
	src      string
	prefix   string   // literal before the first wildcard
	suffix   string   // literal after the last wildcard
	middles  []string // literals between wildcards; len(wild)-1 of them
	wild     []int8   // per wildcard: capture index, or -1 for '*'
	captures []string // capture names in order
	exact    bool     // no wildcard at all
}

// maxWildcards keeps patterns readable and the capture array fixed-size.
const maxWildcards = 8

// compilePattern parses src. Literal characters must be valid channel-name
// characters; capture names are identifiers and unique within the pattern.
func compilePattern(src string) (*pattern, error) {
	if src == "" {
		return nil, errors.New("pattern is empty")
	}
	p := &pattern{src: src}
	var lits []string
	var lit strings.Builder
	lastWasWild := false
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '*' || c == '{':
			if lastWasWild {
				return nil, fmt.Errorf("pattern %q: wildcards must be separated by literal text", src)
			}
			if len(p.wild) == maxWildcards {
				return nil, fmt.Errorf("pattern %q: more than %d wildcards", src, maxWildcards)
			}
			lits = append(lits, lit.String())
			lit.Reset()
			if c == '*' {
				p.wild = append(p.wild, -1)
				i++
			} else {
				end := strings.IndexByte(src[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("pattern %q: unclosed '{'", src)
				}
				name := src[i+1 : i+end]
				if !isIdent(name) {
					return nil, fmt.Errorf("pattern %q: capture name %q is not an identifier", src, name)
				}
				for _, n := range p.captures {
					if n == name {
						return nil, fmt.Errorf("pattern %q: capture %q appears twice", src, name)
					}
				}
				p.wild = append(p.wild, int8(len(p.captures)))
				p.captures = append(p.captures, name)
				i += end + 1
			}
			lastWasWild = true
		case c == '}':
			return nil, fmt.Errorf("pattern %q: unexpected '}'", src)
		case protocol.ValidChannelChar(c):
			lit.WriteByte(c)
			lastWasWild = false
			i++
		default:
			return nil, fmt.Errorf("pattern %q: character %q cannot appear in a channel name", src, c)
		}
	}
	lits = append(lits, lit.String())
	p.prefix = lits[0]
	if len(p.wild) == 0 {
		p.exact = true
		return p, nil
	}
	p.suffix = lits[len(lits)-1]
	p.middles = lits[1 : len(lits)-1]
	return p, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// span is a capture's position in the channel name.
type span struct{ start, end int32 }

// captures holds capture spans; fixed-size so matching does not allocate.
type captures [maxWildcards]span

// match reports whether name matches and fills caps (indexed like
// p.captures).
func (p *pattern) match(name string, caps *captures) bool {
	if p.exact {
		return name == p.prefix
	}
	// Every wildcard needs at least one character.
	if len(name) < len(p.prefix)+len(p.suffix)+len(p.wild) ||
		!strings.HasPrefix(name, p.prefix) || !strings.HasSuffix(name, p.suffix) {
		return false
	}
	pos := len(p.prefix)
	limit := len(name) - len(p.suffix)
	for i, w := range p.wild {
		var end int
		if i == len(p.wild)-1 {
			end = limit
		} else {
			// Leftmost occurrence of the next literal after at least one
			// character. Leftmost is optimal: the following wildcard can absorb
			// anything a later choice would have skipped.
			lit := p.middles[i]
			if pos+1 > limit {
				return false
			}
			j := strings.Index(name[pos+1:limit], lit)
			if j < 0 {
				return false
			}
			end = pos + 1 + j
		}
		if end <= pos {
			return false
		}
		if w >= 0 {
			caps[w] = span{int32(pos), int32(end)}
		}
		if i < len(p.wild)-1 {
			pos = end + len(p.middles[i])
		}
	}
	return true
}

// capture returns the text of capture name, or "" and false.
func (p *pattern) capture(name, channel string, caps *captures) (string, bool) {
	for i, n := range p.captures {
		if n == name {
			s := caps[i]
			return channel[s.start:s.end], true
		}
	}
	return "", false
}

func (p *pattern) captureIndex(name string) int {
	for i, n := range p.captures {
		if n == name {
			return i
		}
	}
	return -1
}
