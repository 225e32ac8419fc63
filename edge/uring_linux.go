//go:build linux

package edge

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// uring is the smallest io_uring the flushers need: a submission queue of socket
// sends and a completion queue, driven by one goroutine at a time (its flusher).
// A fan-out to N sockets then costs one io_uring_enter instead of N write(2)
// calls; where syscalls are expensive (virtual machines, mitigations) that is most
// of the cost of a send.
//
// Only IORING_OP_SEND with MSG_DONTWAIT is used, so every send completes inside
// the io_uring_enter that submitted it (sent in full, in part, or -EAGAIN): the
// buffers are only read during that call, and no request outlives it.
type uring struct {
	fd      int
	entries uint32

	sqRing, cqRing, sqes []byte
	sqTail               *uint32
	sqMask               uint32
	cqHead, cqTail       *uint32
	cqMask               uint32
	cqesOff              uint32
	pending              uint32 // SQEs written but not yet submitted
}

const (
	sysIOUringSetup = 425
	sysIOUringEnter = 426

	ioringOpSend          = 26
	ioringEnterGetEvents  = 1 << 0
	ioringOffSQRing       = 0
	ioringOffCQRing       = 0x8000000
	ioringOffSQEs         = 0x10000000
	ioringSetupCoopTaskrn = 1 << 8 // IORING_SETUP_COOP_TASKRUN (5.19)

	msgDontWait = 0x40
	msgNoSignal = 0x4000
)

type ioSQRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type ioCQRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type ioUringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  ioSQRingOffsets
	cqOff                                                                  ioCQRingOffsets
}

// ioSQE is struct io_uring_sqe (64 bytes) as far as IORING_OP_SEND uses it.
type ioSQE struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64
	addr     uint64
	len      uint32
	msgFlags uint32
	userData uint64
	_        [3]uint64
}

type ioCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// newURing sets up a ring of the given size (a power of two). It fails where the
// kernel has no io_uring or forbids it (io_uring_disabled, seccomp); callers then
// write with write(2).
func newURing(entries uint32) (*uring, error) {
	var p ioUringParams
	p.flags = ioringSetupCoopTaskrn
	fd, _, errno := syscall.Syscall(sysIOUringSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno == syscall.EINVAL {
		p = ioUringParams{}
		fd, _, errno = syscall.Syscall(sysIOUringSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	}
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &uring{fd: int(fd), entries: p.sqEntries}
	var err error
	mmap := func(off int64, size int) []byte {
		if err != nil {
			return nil
		}
		var b []byte
		b, err = syscall.Mmap(r.fd, off, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
		return b
	}
	r.sqRing = mmap(ioringOffSQRing, int(p.sqOff.array+p.sqEntries*4))
	r.cqRing = mmap(ioringOffCQRing, int(p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(ioCQE{}))))
	r.sqes = mmap(ioringOffSQEs, int(p.sqEntries*uint32(unsafe.Sizeof(ioSQE{}))))
	if err != nil {
		r.close()
		return nil, fmt.Errorf("io_uring mmap: %w", err)
	}
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqTail = u32(r.sqRing, p.sqOff.tail)
	r.sqMask = *u32(r.sqRing, p.sqOff.ringMask)
	r.cqHead = u32(r.cqRing, p.cqOff.head)
	r.cqTail = u32(r.cqRing, p.cqOff.tail)
	r.cqMask = *u32(r.cqRing, p.cqOff.ringMask)
	r.cqesOff = p.cqOff.cqes
	// SQE i always sits in slot i: fill the indirection array once.
	for i := uint32(0); i < p.sqEntries; i++ {
		*u32(r.sqRing, p.sqOff.array+i*4) = i
	}
	return r, nil
}

func (r *uring) close() {
	for _, b := range [][]byte{r.sqRing, r.cqRing, r.sqes} {
		if b != nil {
			_ = syscall.Munmap(b)
		}
	}
	_ = syscall.Close(r.fd)
}

// prepSend queues a send of buf on fd; buf must stay alive and unchanged until
// submit returns. At most entries sends may be queued before submit.
func (r *uring) prepSend(fd int, buf []byte, userData uint64) {
	if r.pending >= r.entries {
		// Overwriting a queued SQE would send the wrong buffer to the wrong socket.
		panic("edge: io_uring submission queue overfilled")
	}
	tail := atomic.LoadUint32(r.sqTail) + r.pending
	idx := tail & r.sqMask
	sqe := (*ioSQE)(unsafe.Pointer(&r.sqes[uintptr(idx)*unsafe.Sizeof(ioSQE{})]))
	*sqe = ioSQE{
		opcode:   ioringOpSend,
		fd:       int32(fd),
		addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf)))),
		len:      uint32(len(buf)),
		msgFlags: msgDontWait | msgNoSignal,
		userData: userData,
	}
	r.pending++
}

// submit hands the queued sends to the kernel, waits until all have completed and
// calls done for each completion with its result (bytes sent or -errno).
func (r *uring) submit(done func(userData uint64, res int32)) error {
	n := r.pending
	if n == 0 {
		return nil
	}
	// Publish the SQEs before the kernel can see the new tail.
	atomic.StoreUint32(r.sqTail, atomic.LoadUint32(r.sqTail)+n)
	r.pending = 0
	toSubmit, completed := n, uint32(0)
	for completed < n {
		// It returns how many SQEs it consumed, even when the wait that follows
		// is interrupted; EINTR alone means nothing was consumed.
		got, _, errno := syscall.Syscall6(sysIOUringEnter, uintptr(r.fd), uintptr(toSubmit), uintptr(n-completed), ioringEnterGetEvents, 0, 0)
		switch {
		case errno == syscall.EINTR:
		case errno != 0:
			return fmt.Errorf("io_uring_enter: %w", errno)
		default:
			toSubmit -= min(uint32(got), toSubmit)
		}
		completed += r.reap(done)
	}
	return nil
}

func (r *uring) reap(done func(uint64, int32)) uint32 {
	head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
	var n uint32
	for ; head != tail; head++ {
		cqe := (*ioCQE)(unsafe.Pointer(&r.cqRing[uintptr(r.cqesOff)+uintptr(head&r.cqMask)*unsafe.Sizeof(ioCQE{})]))
		done(cqe.userData, cqe.res)
		n++
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}
