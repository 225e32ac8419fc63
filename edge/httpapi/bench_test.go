package httpapi_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/milequest/pushercm/edge/httpapi"
)

type nopBackend struct{ *fakeBackend }

func (nopBackend) Publish(context.Context, httpapi.Message) (int, error) { return 1, nil }

// BenchmarkTrigger measures one authenticated POST /events through the handler
// (signature, md5, JSON decode, validation) with a backend that does nothing. The
// figures include building the httptest request and recorder (most of the allocations).
//
//	go test -run '^$' -bench Trigger -benchmem ./edge/httpapi
func BenchmarkTrigger(b *testing.B) {
	h := httpapi.New(httpapi.Config{AppID: appID, Key: key, Secret: secret, Now: func() time.Time { return fixedNow }}, nopBackend{newFake()})
	body := []byte(`{"name":"my-event","channels":["my-channel"],"data":"{\"message\":\"hello world\"}"}`)
	target := signedURL("POST", "/apps/3/events", nil, body, secret, fixedNow)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", target, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
