// Package entropy is the logic of mobykit's rngd image (LinuxKit's rngd): it credits the
// kernel's random pool with numbers from the CPU's hardware generator (RDRAND on amd64) through
// the RNDADDENTROPY ioctl.
package entropy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoSource is returned when the CPU has no hardware random number generator.
var ErrNoSource = errors.New("no random source available (the CPU has no RDRAND)")

// Bits is how much entropy each 64-bit number is credited with, as LinuxKit's rngd does.
const Bits = 64

// Rand returns a number from the CPU's generator; ok is false when it had none ready (RDRAND
// may fail transiently) or the CPU has no generator.
func Rand() (uint64, bool) {
	if !Available() {
		return 0, false
	}
	for i := 0; i < 10; i++ { // Intel's advice: retry up to 10 times
		if r, ok := rdrand(); ok {
			return r, true
		}
	}
	return 0, false
}

// Request is the kernel's struct rand_pool_info with one 64-bit word of data.
func Request(r uint64) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[0:], Bits) // entropy_count (bits)
	binary.LittleEndian.PutUint32(b[4:], 8)    // buf_size (bytes)
	binary.LittleEndian.PutUint64(b[8:], r)
	return b
}

// Add credits the pool behind random (an open /dev/random) with r.
func Add(random *os.File, r uint64) error {
	req := Request(r)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, random.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", errno)
	}
	return nil
}

// Run feeds the pool: one number at once, then one more each time the kernel says /dev/random
// wants more (EPOLLOUT), as LinuxKit's rngd; with oneshot it stops after the first round. It
// returns the number of bytes credited.
func Run(oneshot bool, logf func(string, ...any)) (int, error) {
	if !Available() {
		return 0, ErrNoSource
	}
	random, err := os.OpenFile("/dev/random", os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("opening /dev/random: %w", err)
	}
	defer random.Close()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return 0, fmt.Errorf("epoll: %w", err)
	}
	defer unix.Close(epfd)
	fd := int(random.Fd())
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(fd)}); err != nil {
		return 0, fmt.Errorf("epoll add: %w", err)
	}
	timeout := -1
	if oneshot {
		timeout = 0
	}
	count := 0
	events := make([]unix.EpollEvent, 1)
	for {
		if r, ok := Rand(); ok { // a transient failure is retried at the next wake-up
			if err := Add(random, r); err != nil {
				return count, err
			}
			count += 8
		}
		n, err := unix.EpollWait(epfd, events, timeout)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return count, fmt.Errorf("epoll wait: %w", err)
		}
		if n == 1 && events[0].Events&unix.EPOLLOUT != 0 {
			continue
		}
		if oneshot {
			logf("wrote %d bytes of entropy, exiting as oneshot", count)
			return count, nil
		}
	}
}
