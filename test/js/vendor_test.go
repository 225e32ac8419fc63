package jsinterop_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestDemoServesPinnedPusherJS checks that the pusher-js the demo app
// serves from the binary (web/demo/static/vendor) is, byte for byte, the
// dist file of the pusher-js that package-lock.json pins. Upgrading it is:
// bump pusher-js here, npm install, copy the file, commit both.
func TestDemoServesPinnedPusherJS(t *testing.T) {
	npm := mustLookPath(t, "npm")
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	ensureNodeModules(t, npm, dir)
	const file = "pusher-with-encryption.min.js"
	want, err := os.ReadFile(filepath.Join(dir, "node_modules", "pusher-js", "dist", "web", file))
	if err != nil {
		t.Fatal(err)
	}
	vendored := filepath.Join(dir, "..", "..", "web", "demo", "static", "vendor", file)
	got, err := os.ReadFile(vendored)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not the pinned pusher-js's %s: copy node_modules/pusher-js/dist/web/%s over it", vendored, file, file)
	}
}
