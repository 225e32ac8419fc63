//go:build !linux

package edge

import "errors"

// uring exists only on Linux; elsewhere the flushers write with write(2).
type uring struct{}

func newURing(uint32, uint8) (*uring, error)              { return nil, errors.New("io_uring: not on this OS") }
func (*uring) close()                                     {}
func (*uring) prepSend(int, []byte, uint64)               {}
func (*uring) submit(func(uint64, int32)) (uint32, error) { return 0, nil }

// ioringOpSend is io_uring's send opcode, named for the shared flusher code.
const ioringOpSend = 26
