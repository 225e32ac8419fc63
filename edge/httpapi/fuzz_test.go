package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/milequest/pushercm/protocol"
)

// FuzzRequest drives arbitrary requests through authentication and routing. Properties:
// the handler never panics, always answers a JSON object with a known status, and no
// request gets past authentication (any status other than 401/404/405/413) unless its
// signature, key, version, timestamp and body_md5 verify.
//
//	go test -fuzz=FuzzRequest ./edge/httpapi
func FuzzRequest(f *testing.F) {
	seed := func(method, path string, params map[string]string, body string) {
		q := protocol.SignRequest(key, secret, method, path, params, []byte(body), fixedNow)
		f.Add(method, path, protocol.EncodeQuery(q), []byte(body))
	}
	seed("POST", "/apps/3/events", nil, `{"name":"e","data":"x","channels":["a","#server-to-user-1"],"socket_id":"1.2","info":"user_count"}`)
	seed("POST", "/apps/3/batch_events", nil, `{"batch":[{"channel":"a","name":"e","data":"x"}]}`)
	seed("GET", "/apps/3/channels", map[string]string{"filter_by_prefix": "presence-", "info": "user_count"}, "")
	seed("GET", "/apps/3/channels/presence-a@b,c;d=e", map[string]string{"info": "user_count,subscription_count"}, "")
	seed("GET", "/apps/3/channels/cache-x", map[string]string{"info": "cache"}, "")
	seed("GET", "/apps/3/channels/presence-room/users", nil, "")
	seed("POST", "/apps/3/users/1/terminate_connections", nil, `{}`)
	f.Add("GET", "/apps/3/channels", "auth_key=k&auth_signature=&auth_timestamp=x", []byte(nil))
	f.Add("POST", "/apps/3/events", "auth_signature=%zz&;;&=&a=b=c", []byte("{"))

	be := newFake()
	be.seedState()
	h := newHandler(f, be, nil)
	known := map[int]bool{200: true, 400: true, 401: true, 403: true, 404: true, 405: true, 413: true}

	f.Fuzz(func(t *testing.T, method, path, rawQuery string, body []byte) {
		if !strings.HasPrefix(path, "/") || len(body) > 1<<16 {
			t.Skip()
		}
		req := &http.Request{
			Method:        method,
			URL:           &url.URL{Path: path, RawQuery: rawQuery},
			Header:        http.Header{},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		var obj map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &obj); err != nil || obj == nil {
			t.Fatalf("status %d body %q is not a JSON object", rec.Code, rec.Body.Bytes())
		}
		if !known[rec.Code] {
			t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body.Bytes())
		}
		switch rec.Code {
		case 401, 404, 405, 413:
			return
		}
		check := protocol.RequestCheck{
			Method: method, Path: req.URL.Path, RawQuery: rawQuery, Body: body,
			Secret: func(k string) (string, bool) { return secret, k == key },
			Now:    fixedNow,
		}
		_, _, err := protocol.VerifyRequest(check)
		if err != nil {
			check.Path = req.URL.EscapedPath()
			_, _, err = protocol.VerifyRequest(check)
		}
		if err != nil {
			t.Fatalf("status %d for a request that does not authenticate (%v)", rec.Code, err)
		}
	})
}
