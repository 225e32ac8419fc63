package httpapi

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The event bodies of POST events and batch_events are decoded by a
// single-pass reader for the shape every SDK sends, with encoding/json as
// the fallback for everything else: fastTrigger either returns exactly what
// json.Unmarshal into triggerBody (and decodeData on its data) would give,
// or reports false and decodes nothing. FuzzFastTrigger holds it to that.
//
// Why: encoding/json scans the body once to validate it, again to decode
// it, and the data string a third time (decodeData); its deep reflective
// frames also grow the request goroutine's stack on every request. For a
// publish with a 100-byte data string that was a fifth of the HTTP API's
// CPU (BENCHMARKS.md, "The HTTP publish body, read once").
//
// The fast path takes: one JSON object whose keys are exactly the six
// field names, each at most once; string values for name, channel,
// socket_id, info and data; an array of strings for channels; strings with
// any JSON escape and valid UTF-8. Anything else (other keys, keys in
// another case, null, numbers, data given as a JSON object, invalid UTF-8,
// syntax errors) goes to encoding/json, which decides and words the error.

// fastReader walks a JSON text.
type fastReader struct {
	b []byte
	i int
}

func (r *fastReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// next skips whitespace and reports whether the next byte is c, consuming it.
func (r *fastReader) next(c byte) bool {
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// str reads a JSON string into its value. It refuses (false) what
// encoding/json would treat differently from a plain decode: invalid UTF-8
// and unpaired surrogate escapes (both become U+FFFD there).
func (r *fastReader) str() (string, bool) {
	r.ws()
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return "", false
	}
	r.i++
	start := r.i
	// Fast scan: no escape and ASCII only is the common case for names.
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c == '"' {
			s := string(r.b[start:r.i])
			r.i++
			return s, true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		r.i++
	}
	var sb strings.Builder
	sb.Grow(r.i - start + 16)
	sb.Write(r.b[start:r.i])
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			return sb.String(), true
		case c < 0x20:
			return "", false
		case c == '\\':
			if r.i+1 >= len(r.b) {
				return "", false
			}
			e := r.b[r.i+1]
			r.i += 2
			switch e {
			case '"', '\\', '/':
				sb.WriteByte(e)
			case 'b':
				sb.WriteByte('\b')
			case 'f':
				sb.WriteByte('\f')
			case 'n':
				sb.WriteByte('\n')
			case 'r':
				sb.WriteByte('\r')
			case 't':
				sb.WriteByte('\t')
			case 'u':
				r1, ok := r.hex4()
				if !ok {
					return "", false
				}
				if utf16.IsSurrogate(r1) {
					// Only a high surrogate followed by an escaped low one is
					// a rune; the rest is U+FFFD in encoding/json: leave it.
					if r1 >= 0xDC00 || r.i+1 >= len(r.b) || r.b[r.i] != '\\' || r.b[r.i+1] != 'u' {
						return "", false
					}
					r.i += 2
					r2, ok := r.hex4()
					if !ok {
						return "", false
					}
					rr := utf16.DecodeRune(r1, r2)
					if rr == utf8.RuneError {
						return "", false
					}
					r1 = rr
				}
				sb.WriteRune(r1)
			default:
				return "", false
			}
		case c < utf8.RuneSelf:
			sb.WriteByte(c)
			r.i++
		default:
			rr, size := utf8.DecodeRune(r.b[r.i:])
			if rr == utf8.RuneError && size == 1 {
				return "", false
			}
			sb.Write(r.b[r.i : r.i+size])
			r.i += size
		}
	}
	return "", false
}

func (r *fastReader) hex4() (rune, bool) {
	if r.i+4 > len(r.b) {
		return 0, false
	}
	var v rune
	for _, c := range r.b[r.i : r.i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | rune(c)
	}
	r.i += 4
	return v, true
}

// trigger reads one event object. The data string is returned decoded in
// tb.dataString (tb.Data stays empty).
func (r *fastReader) trigger() (tb triggerBody, ok bool) {
	if !r.next('{') {
		return tb, false
	}
	var seen uint8
	if r.next('}') {
		return tb, false // no data: encoding/json words the error
	}
	for {
		key, ok := r.str()
		if !ok || !r.next(':') {
			return tb, false
		}
		var bit uint8
		var dst *string // nil: channels
		switch key {
		case "name":
			bit, dst = 1, &tb.Name
		case "data":
			bit, dst = 2, &tb.dataString
		case "channels":
			bit = 4
		case "channel":
			bit, dst = 8, &tb.Channel
		case "socket_id":
			bit, dst = 16, &tb.SocketID
		case "info":
			bit, dst = 32, &tb.Info
		default:
			return tb, false
		}
		if seen&bit != 0 {
			return tb, false
		}
		seen |= bit
		if dst != nil {
			*dst, ok = r.str()
		} else {
			tb.Channels, ok = r.strings()
		}
		if !ok {
			return tb, false
		}
		if r.next('}') {
			tb.dataSet = seen&2 != 0
			return tb, true
		}
		if !r.next(',') {
			return tb, false
		}
	}
}

// strings reads a non-empty array of strings.
func (r *fastReader) strings() ([]string, bool) {
	if !r.next('[') {
		return nil, false
	}
	if r.next(']') {
		return nil, false // [] is an empty, non-nil slice in encoding/json
	}
	var out []string
	for {
		s, ok := r.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if r.next(']') {
			return out, true
		}
		if !r.next(',') {
			return nil, false
		}
	}
}

// end reports whether only whitespace is left.
func (r *fastReader) end() bool {
	r.ws()
	return r.i == len(r.b)
}

// fastTrigger decodes a POST events body, or reports false.
func fastTrigger(body []byte) (triggerBody, bool) {
	r := fastReader{b: body}
	tb, ok := r.trigger()
	if !ok || !r.end() {
		return triggerBody{}, false
	}
	return tb, true
}

// fastBatch decodes a POST batch_events body ({"batch": [event, ...]}, at
// most limit events: more goes to encoding/json and its error), or reports
// false.
func fastBatch(body []byte, limit int) ([]triggerBody, bool) {
	r := fastReader{b: body}
	if !r.next('{') {
		return nil, false
	}
	if key, ok := r.str(); !ok || key != "batch" || !r.next(':') || !r.next('[') || r.next(']') {
		return nil, false
	}
	var out []triggerBody
	for {
		if len(out) == limit {
			return nil, false
		}
		tb, ok := r.trigger()
		if !ok {
			return nil, false
		}
		out = append(out, tb)
		if r.next(']') {
			break
		}
		if !r.next(',') {
			return nil, false
		}
	}
	if !r.next('}') || !r.end() {
		return nil, false
	}
	return out, true
}
