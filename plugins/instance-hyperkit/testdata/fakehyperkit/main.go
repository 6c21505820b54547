// Command fakehyperkit stands in for HyperKit in tests on hosts without it. It checks the
// command line the way HyperKit parses it (-F pidfile, -l com1,autopty=DIR/tty,log=FILE,
// -f kexec,KERNEL,INITRD,CMDLINE with the files present), records its arguments next to the
// PID file (argv.json), writes its PID file and a boot line to the console log, and on
// SIGTERM (HyperKit's ACPI power button) writes "ACPI shutdown" and exits, unless
// FAKEHYPERKIT_IGNORE_ACPI is set; it also appends "acpi-shutdown PID" to $FAKEHYPERKIT_EVENTS.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	var pidFile, console, kexec string
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-F":
			i++
			pidFile = args[i]
		case "-l":
			i++
			for _, kv := range strings.Split(args[i], ",") {
				if v, ok := strings.CutPrefix(kv, "log="); ok {
					console = v
				}
			}
		case "-f":
			i++
			kexec = args[i]
		}
	}
	fail := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "fakehyperkit: "+f+"\n", a...); os.Exit(1) }
	if pidFile == "" || console == "" {
		fail("want -F pidfile and -l com1,...,log=FILE")
	}
	parts := strings.SplitN(kexec, ",", 4)
	if len(parts) != 4 || parts[0] != "kexec" {
		fail("want -f kexec,KERNEL,INITRD,CMDLINE, got %q", kexec)
	}
	for _, f := range parts[1:3] {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			fail("%v", err)
		}
	}
	b, _ := json.Marshal(os.Args)
	os.WriteFile(filepath.Join(filepath.Dir(pidFile), "argv.json"), b, 0o644)
	os.WriteFile(pidFile, []byte(fmt.Sprint(os.Getpid())), 0o644)
	con, err := os.OpenFile(console, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fail("%v", err)
	}
	fmt.Fprintf(con, "fake kernel booting: %s\n", parts[3])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	for range sig {
		if os.Getenv("FAKEHYPERKIT_IGNORE_ACPI") != "" {
			continue
		}
		fmt.Fprintln(con, "ACPI shutdown")
		if ev := os.Getenv("FAKEHYPERKIT_EVENTS"); ev != "" {
			f, _ := os.OpenFile(ev, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			fmt.Fprintf(f, "acpi-shutdown %d\n", os.Getpid())
			f.Close()
		}
		con.Close()
		os.Remove(pidFile)
		os.Exit(0)
	}
}
