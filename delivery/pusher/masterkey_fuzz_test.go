package pusher

import (
	"errors"
	"testing"

	"github.com/milequest/pushercm/protocol"
)

// FuzzMasterKeyConfig: the pusher driver accepts exactly the encryption master keys
// that protocol.DecodeMasterKey accepts (32 bytes in standard base64), the check the
// embedded driver's authorizer uses, so one configuration never works on one driver
// and fails on the other.
//
//	go test -fuzz=FuzzMasterKeyConfig ./delivery/pusher
func FuzzMasterKeyConfig(f *testing.F) {
	for _, s := range []string{"nxzvbGF+f8FGhk/jOaZvgMle1tqxzF/VfUZLBLhhaH0=", "c2hvcnQ=", "", "nxzvbGF-f8FGhk_jOaZvgMle1tqxzF_VfUZLBLhhaH0=", "nxzvbGF+f8FGhk/jOaZvgMle1tqxzF/VfUZLBLhhaH0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Config{AppID: "1", Key: "k", Secret: "s", EncryptionMasterKeyBase64: s}
		err := c.Validate()
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Fatalf("%q: error %v is not ErrConfig", s, err)
		}
		_, derr := protocol.DecodeMasterKey(s)
		if want := s == "" || derr == nil; (err == nil) != want {
			t.Fatalf("master key %q: driver error %v, DecodeMasterKey error %v", s, err, derr)
		}
	})
}
