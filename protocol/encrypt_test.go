package protocol

import (
	"bytes"
	"encoding/base64"
	"testing"
)

func TestEncryptDataRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	const ch = "private-encrypted-team-a"
	// The plaintext has spaces, which base64 never does: a random nonce or
	// ciphertext cannot contain it by chance (a two-letter "hi" did, about
	// one run in fifty).
	const plain = `{"text":"walked 5 km with team a"}`
	enc, err := EncryptData(ch, key, plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains([]byte(enc), []byte("walked 5 km")) {
		t.Fatalf("plaintext visible in %s", enc)
	}
	got, err := DecryptData(ch, key, enc)
	if err != nil || got != plain {
		t.Fatalf("DecryptData = %q, %v", got, err)
	}
	if _, err := DecryptData("private-encrypted-team-b", key, enc); err == nil {
		t.Fatal("opened with another channel's key")
	}
	// The key is the one SharedSecret hands to subscribers.
	sk, _ := base64.StdEncoding.DecodeString(SharedSecret(ch, key))
	if len(sk) != 32 {
		t.Fatalf("shared secret is %d bytes", len(sk))
	}
	if _, err := EncryptData(ch, key[:31], "x"); err == nil {
		t.Fatal("short master key accepted")
	}
}
