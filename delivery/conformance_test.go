package delivery_test

import (
	"testing"

	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/delivery/idempotencytest"
)

func TestMemoryStoreConformance(t *testing.T) {
	idempotencytest.Run(t, func(t *testing.T) delivery.IdempotencyStore {
		s, err := delivery.NewMemoryStore(delivery.MemoryStoreConfig{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
