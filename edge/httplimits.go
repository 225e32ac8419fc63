package edge

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// nbhttp parses a whole request, body included, before it calls a handler, so
// the handlers' own limits (http.MaxBytesReader) come too late to bound
// memory. limitProcessor sits between nbhttp's parser and its request
// processor on every connection that has not been upgraded. It refuses a
// request whose declared body is over its route's limit as soon as the head
// has been read, counts chunked bodies as they arrive, and bounds the bytes of
// a request head. A refused connection gets its answer, and every byte it
// sends afterwards is dropped unread until it is closed CloseGrace later
// (closing at once could reset the connection before the client read the
// answer).
//
// Its callbacks run inside nbhttp's Parse, and the counters in onData, all on
// the connection's poller goroutine.
type limitProcessor struct {
	nbhttp.Processor
	s *Server

	method, uri string
	inBody      bool  // the head is complete, the body is being read
	completed   bool  // a request completed during the current read
	headBytes   int   // bytes read while in a request head
	bodyBytes   int64 // body bytes of the current request
	bodyLimit   int64 // its route's limit

	refusal  int  // the status to answer with; 0 while the request is fine
	answered bool // the refusal was sent; drop everything from now on
}

func (p *limitProcessor) OnMethod(parser *nbhttp.Parser, method string) {
	if p.refusal != 0 {
		return
	}
	p.method = method
	p.Processor.OnMethod(parser, method)
}

func (p *limitProcessor) OnURL(parser *nbhttp.Parser, uri string) error {
	if p.refusal != 0 {
		return nil
	}
	p.uri = uri
	return p.Processor.OnURL(parser, uri)
}

func (p *limitProcessor) OnProto(parser *nbhttp.Parser, proto string) error {
	if p.refusal != 0 {
		return nil
	}
	return p.Processor.OnProto(parser, proto)
}

func (p *limitProcessor) OnHeader(parser *nbhttp.Parser, key, value string) {
	if p.refusal != 0 {
		return
	}
	p.Processor.OnHeader(parser, key, value)
}

func (p *limitProcessor) OnTrailerHeader(parser *nbhttp.Parser, key, value string) {
	if p.refusal != 0 {
		return
	}
	p.Processor.OnTrailerHeader(parser, key, value)
}

// OnContentLength is called once the head is complete, for every request
// (-1 when no Content-Length was sent, as for chunked bodies).
func (p *limitProcessor) OnContentLength(parser *nbhttp.Parser, n int) {
	if p.refusal != 0 {
		return
	}
	p.inBody, p.headBytes, p.bodyBytes = true, 0, 0
	p.bodyLimit = p.s.bodyLimitOf(p.method, p.uri)
	if int64(n) > p.bodyLimit {
		p.refusal = http.StatusRequestEntityTooLarge
		return
	}
	p.Processor.OnContentLength(parser, n)
}

func (p *limitProcessor) OnBody(parser *nbhttp.Parser, data []byte) error {
	if p.refusal != 0 {
		return nil
	}
	p.bodyBytes += int64(len(data))
	if p.bodyBytes > p.bodyLimit {
		p.refusal = http.StatusRequestEntityTooLarge
		return nil
	}
	return p.Processor.OnBody(parser, data)
}

func (p *limitProcessor) OnComplete(parser *nbhttp.Parser) {
	p.inBody, p.completed = false, true
	if p.refusal != 0 {
		return
	}
	p.Processor.OnComplete(parser)
}

// onData is the engine's data callback: it puts a limitProcessor under every
// HTTP connection's parser before its first byte is parsed, and drops what a
// refused connection still sends.
func (s *Server) onData(c *nbio.Conn, data []byte) {
	parser, ok := c.Session().(*nbhttp.Parser)
	if !ok { // upgraded: a WebSocket, bounded by the upgrader's limits
		c.DataHandler()(c, data)
		return
	}
	p, ok := parser.Processor.(*limitProcessor)
	if !ok {
		p = &limitProcessor{Processor: parser.Processor, s: s}
		parser.Processor = p
		if plainConn(parser) {
			c.OnData(s.checkFrames(c.DataHandler()))
		}
	}
	if p.answered {
		return
	}
	c.DataHandler()(c, data)
	if p.refusal == 0 && !p.inBody {
		// Counted per read: a read that finished one request and started the
		// next is not counted, so a head may take up to one read buffer more.
		if p.completed {
			p.headBytes = 0
		} else {
			p.headBytes += len(data)
		}
		if p.headBytes > s.cfg.MaxHeaderBytes {
			p.refusal = http.StatusRequestHeaderFieldsTooLarge
		}
	}
	p.completed = false
	if p.refusal != 0 {
		p.answered = true
		s.st.httpRefused.Add(1)
		_, _ = parser.Conn.Write(refusalResponse(p.refusal))
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.CloseGrace))
	}
}

func refusalResponse(status int) []byte {
	text := http.StatusText(status)
	body := `{"error":"` + text + `","code":` + strconv.Itoa(status) + `}`
	return []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + text + "\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body)
}

// bodyLimit is the body limit of the route that serves method and uri.
// Unrouted requests get the limit of Handle, whatever they send is answered 404.
func (s *Server) bodyLimit(method, uri string) int64 {
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return 0
	}
	_, pattern := s.mux.Handler(&http.Request{Method: method, URL: u})
	if n, ok := s.bodyLimits[pattern]; ok {
		return n
	}
	return DefaultRouteBodyBytes
}

// maxBodyLimit is the largest body any route accepts.
func (s *Server) maxBodyLimit() int64 {
	n := int64(DefaultRouteBodyBytes)
	for _, l := range s.bodyLimits {
		n = max(n, l)
	}
	return n
}
