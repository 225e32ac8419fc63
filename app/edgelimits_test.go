package app

import (
	"context"
	"testing"

	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/edge/httpapi"
	"github.com/milequest/pushercm/ratelimit"
)

func TestHTTPAPILimiter(t *testing.T) {
	kb, err := ratelimit.NewKeyedBucket(2, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := httpAPILimiter{kb}
	req := httpapi.LimitRequest{AppID: "app-id", Op: httpapi.OpPublish, Events: 1}
	for i := 0; i < 2; i++ {
		if ok, _ := l.Allow(context.Background(), req); !ok {
			t.Fatalf("request %d refused inside the burst", i+1)
		}
	}
	ok, retry := l.Allow(context.Background(), req)
	if ok || retry <= 0 {
		t.Fatalf("3rd request: allowed=%v retryAfter=%v", ok, retry)
	}
	if ok, _ := l.Allow(context.Background(), httpapi.LimitRequest{AppID: "other"}); !ok {
		t.Fatal("another app shares the bucket")
	}
}

func TestEdgeLimitOptions(t *testing.T) {
	e := config.Default().Edge
	if opts, err := edgeLimitOptions(e); err != nil || len(opts) != 0 {
		t.Fatalf("defaults: %d options, %v", len(opts), err)
	}
	e.HTTPRequestsPerSecond = 5
	if opts, err := edgeLimitOptions(e); err != nil || len(opts) != 1 {
		t.Fatalf("with a limit: %d options, %v", len(opts), err)
	}
}
