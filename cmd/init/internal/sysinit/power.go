package sysinit

import (
	"encoding/binary"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Action is what the machine does at the end: power off, reboot or halt.
type Action int

const (
	PowerOff Action = iota
	Reboot
	Halt
)

func (a Action) String() string {
	return [...]string{"power off", "reboot", "halt"}[a]
}

// RebootCmd is the reboot(2) command for the action.
func (a Action) RebootCmd() int {
	switch a {
	case Reboot:
		return unix.LINUX_REBOOT_CMD_RESTART
	case Halt:
		return unix.LINUX_REBOOT_CMD_HALT
	}
	return unix.LINUX_REBOOT_CMD_POWER_OFF
}

// ShutdownRequests returns a channel of shutdown requests and their cause: busybox's
// conventions for PID 1 (SIGUSR2 power off, SIGTERM reboot, SIGUSR1 halt), Ctrl-Alt-Del
// (SIGINT once the kernel is told to signal init), and the ACPI power button.
func ShutdownRequests(con *Console) <-chan Request {
	ch := make(chan Request, 4)
	unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, unix.SIGUSR1, unix.SIGUSR2, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
	go func() {
		for s := range sig {
			switch s {
			case unix.SIGUSR2, unix.SIGPWR:
				ch <- Request{PowerOff, "signal " + s.String()}
			case unix.SIGUSR1:
				ch <- Request{Halt, "signal " + s.String()}
			default:
				ch <- Request{Reboot, "signal " + s.String()}
			}
		}
	}()
	watchPowerButtons(con, ch)
	return ch
}

// Request is a shutdown request.
type Request struct {
	Action Action
	Cause  string
}

// watchPowerButtons reads the input devices the kernel names "Power Button" (ACPI's button
// driver, with evdev) and asks for a power off on a KEY_POWER press.
func watchPowerButtons(con *Console, ch chan<- Request) {
	devs, _ := filepath.Glob("/sys/class/input/event*/device/name")
	for _, n := range devs {
		name, err := os.ReadFile(n)
		if err != nil || strings.TrimSpace(string(name)) != "Power Button" {
			continue
		}
		ev := filepath.Base(filepath.Dir(filepath.Dir(n)))
		f, err := os.Open("/dev/input/" + ev)
		if err != nil {
			con.Printf("power button %s: %v", ev, err)
			continue
		}
		go func() {
			defer f.Close()
			buf := make([]byte, 24) // struct input_event on 64-bit: timeval, type, code, value
			for {
				if _, err := f.Read(buf); err != nil {
					return
				}
				typ := binary.NativeEndian.Uint16(buf[16:18])
				code := binary.NativeEndian.Uint16(buf[18:20])
				val := int32(binary.NativeEndian.Uint32(buf[20:24]))
				const evKey, keyPower = 1, 116
				if typ == evKey && code == keyPower && val == 1 {
					ch <- Request{PowerOff, "ACPI power button"}
				}
			}
		}()
	}
}

// KillAll sends sig to every process but init.
func KillAll(sig unix.Signal) { unix.Kill(-1, sig) }
