package app

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/milequest/pushercm/config"
)

// A failing New releases what it built (and says why).
func TestNewFailsCleanly(t *testing.T) {
	cfg := config.Default()
	cfg.Dev = true
	cfg.ApplyDev()
	cfg.Pusher.EncryptionMasterKeyBase64 = "not-base64-of-32-bytes"
	_, err := New(context.Background(), &config.Loaded{Config: cfg}, Options{LogOutput: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "PUSHER_ENCRYPTION_MASTER_KEY_BASE64") {
		t.Fatalf("err %v", err)
	}
}
