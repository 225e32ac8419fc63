package web_test

import (
	"bytes"
	"os"
	"testing"
)

// TestVendoredPusherJS checks that the pusher-js the demo serves is, byte
// for byte, the dist file of the npm package that test/js's lockfile pins
// (installed by `make js-deps`, which `make test` runs first). Upgrading
// pusher-js is: bump test/js, npm install, copy the file, commit both.
func TestVendoredPusherJS(t *testing.T) {
	const (
		vendored = "demo/static/vendor/pusher-with-encryption.min.js"
		pinned   = "../test/js/node_modules/pusher-js/dist/web/pusher-with-encryption.min.js"
	)
	want, err := os.ReadFile(pinned)
	if err != nil {
		t.Fatalf("the pinned pusher-js is not installed (run `make js-deps`): %v", err)
	}
	got, err := os.ReadFile(vendored)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from %s: copy the pinned file over it", vendored, pinned)
	}
}
