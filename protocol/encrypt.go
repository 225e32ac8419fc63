package protocol

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"golang.org/x/crypto/nacl/secretbox"
)

// EncryptedData is the data field of an event on a private-encrypted
// channel (§3.3): a NaCl secretbox of the plaintext under the channel's
// shared secret, as Pusher's server SDKs send it and pusher-js opens it.
type EncryptedData struct {
	Nonce      string `json:"nonce"`
	Ciphertext string `json:"ciphertext"`
}

// EncryptData seals data for a private-encrypted channel with a fresh
// random nonce and returns the JSON the event's data field carries. Only
// subscribers given the channel's shared secret (SharedSecret) can open it.
func EncryptData(channel string, masterKey []byte, data string) (string, error) {
	if len(masterKey) != 32 {
		return "", ErrMasterKeySize
	}
	key := sha256.Sum256(append([]byte(channel), masterKey...))
	var nonce [24]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", fmt.Errorf("protocol: nonce: %w", err)
	}
	box := secretbox.Seal(nil, []byte(data), &nonce, &key)
	b, err := json.Marshal(EncryptedData{
		Nonce:      base64.StdEncoding.EncodeToString(nonce[:]),
		Ciphertext: base64.StdEncoding.EncodeToString(box),
	})
	return string(b), err
}

// DecryptData opens what EncryptData sealed.
func DecryptData(channel string, masterKey []byte, encrypted string) (string, error) {
	var e EncryptedData
	if err := json.Unmarshal([]byte(encrypted), &e); err != nil {
		return "", fmt.Errorf("protocol: encrypted data: %w", err)
	}
	nonce, err := base64.StdEncoding.DecodeString(e.Nonce)
	if err != nil || len(nonce) != 24 {
		return "", fmt.Errorf("protocol: encrypted data: bad nonce")
	}
	box, err := base64.StdEncoding.DecodeString(e.Ciphertext)
	if err != nil {
		return "", fmt.Errorf("protocol: encrypted data: bad ciphertext")
	}
	key := sha256.Sum256(append([]byte(channel), masterKey...))
	var n [24]byte
	copy(n[:], nonce)
	out, ok := secretbox.Open(nil, box, &n, &key)
	if !ok {
		return "", fmt.Errorf("protocol: encrypted data: does not open with this channel's key")
	}
	return string(out), nil
}
