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
	sqHead, sqTail       *uint32
	sqMask               uint32
	cqHead, cqTail       *uint32
	cqMask               uint32
	cqesOff              uint32
	pending              uint32 // SQEs written but not yet submitted
	sendOp               uint8  // ioringOpSend; tests swap it to make the kernel refuse sends
}

// ringEnter is io_uring_enter(2). Tests replace it to inject failures; the flushers
// call it once per batch of up to ringEntries sends.
var ringEnter = func(fd int, toSubmit, minComplete, flags uint32) (uint32, syscall.Errno) {
	n, _, errno := syscall.Syscall6(sysIOUringEnter, uintptr(fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	return uint32(n), errno
}

const (
	sysIOUringSetup = 425
	sysIOUringEnter = 426
	sysIOUringReg   = 427

	ioringRegisterProbe = 8 // IORING_REGISTER_PROBE (5.6, as IORING_OP_SEND)
	ioUringOpSupported  = 1 // IO_URING_OP_SUPPORTED

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

// ioProbe is struct io_uring_probe with room for every opcode.
type ioProbe struct {
	lastOp, opsLen uint8
	_              uint16
	_              [3]uint32
	ops            [256]struct {
		op    uint8
		_     uint8
		flags uint16
		_     uint32
	}
}

type ioCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// newURing sets up a ring of the given size (a power of two) that sends with
// sendOp (ioringOpSend; tests pass others). It fails where the kernel has no
// io_uring or forbids it (io_uring_disabled, seccomp), or does not support sendOp
// (IORING_OP_SEND came in 5.6, io_uring itself in 5.1); callers then write with
// write(2).
func newURing(entries uint32, sendOp uint8) (*uring, error) {
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
	r := &uring{fd: int(fd), entries: p.sqEntries, sendOp: sendOp}
	if !r.supports(sendOp) {
		_ = syscall.Close(r.fd)
		return nil, fmt.Errorf("io_uring: kernel does not support opcode %d", sendOp)
	}
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
	r.sqHead = u32(r.sqRing, p.sqOff.head)
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

// supports reports whether the kernel implements op on this ring. Kernels without
// IORING_REGISTER_PROBE (before 5.6) have no IORING_OP_SEND either.
func (r *uring) supports(op uint8) bool {
	var p ioProbe
	_, _, errno := syscall.Syscall6(sysIOUringReg, uintptr(r.fd), ioringRegisterProbe, uintptr(unsafe.Pointer(&p)), uintptr(len(p.ops)), 0, 0)
	if errno != 0 {
		return false
	}
	return op < p.opsLen && op <= p.lastOp && p.ops[op].flags&ioUringOpSupported != 0
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
		opcode:   r.sendOp,
		fd:       int32(fd),
		addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf)))),
		len:      uint32(len(buf)),
		msgFlags: msgDontWait | msgNoSignal,
		userData: userData,
	}
	r.pending++
}

// submit hands the queued sends to the kernel, waits until all have completed and
// calls done for each completion with its result (bytes sent or -errno). It
// returns how many of the queued sends the kernel took, in the order they were
// queued: all of them, unless io_uring_enter failed. Then every completion posted
// so far has been reported (a send may have completed even though a later call
// failed), the sends past taken were never started, and the ring must be closed
// (which discards them).
func (r *uring) submit(done func(userData uint64, res int32)) (taken uint32, err error) {
	n := r.pending
	if n == 0 {
		return 0, nil
	}
	head := atomic.LoadUint32(r.sqHead)
	// Publish the SQEs before the kernel can see the new tail.
	atomic.StoreUint32(r.sqTail, atomic.LoadUint32(r.sqTail)+n)
	r.pending = 0
	toSubmit, completed := n, uint32(0)
	for completed < n {
		// It returns how many SQEs it consumed, even when the wait that follows
		// is interrupted; EINTR alone means nothing was consumed.
		got, errno := ringEnter(r.fd, toSubmit, n-completed, ioringEnterGetEvents)
		switch {
		case errno == syscall.EINTR:
		case errno != 0:
			r.reap(done)
			// The kernel's head says how many SQEs it consumed, whatever the
			// calls returned.
			return min(atomic.LoadUint32(r.sqHead)-head, n), fmt.Errorf("io_uring_enter: %w", errno)
		default:
			toSubmit -= min(got, toSubmit)
		}
		completed += r.reap(done)
	}
	return n, nil
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
