// Package browser holds the real-browser tests only (package
// browser_test). They drive the demo app and the operator console in a
// real browser: Debian's chromium (/usr/bin/chromium, installed by
// `make browser-deps`, which `make test` runs), headless, through the
// DevTools protocol (chromedp). It runs the whole pushercm app in-process
// on loopback ports and checks what a user sees on the pages and what
// goes over the wire; for the console's cluster view it builds the
// pushercm binary and runs three nodes sharing a Redis (internal/redistest).
// A missing chromium fails the test; it never skips.
//
// The screenshots it takes of the pages go to PUSHERCM_SCREENSHOT_DIR
// (default: screenshots/ here, which git ignores); `make screenshots`
// writes the README's copies under docs/ the same way.
package browser
