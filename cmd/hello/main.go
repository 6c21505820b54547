// Command hello is mobykit's tiny test image: it prints a marker line and then sleeps, exits
// or keeps printing, so that tests can see on a console that a container ran, that a service
// keeps running and that an exiting service is restarted.
//
//	hello [-sleep] [-exit N] [-every D] MESSAGE...
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	sleep := flag.Bool("sleep", false, "after printing, wait until terminated")
	exit := flag.Int("exit", 0, "exit status after printing (and after -after)")
	after := flag.Duration("after", 0, "wait this long before exiting")
	every := flag.Duration("every", 0, "print the message again at this interval (implies -sleep)")
	flag.Parse()
	msg := strings.Join(flag.Args(), " ")
	if msg == "" {
		msg = "hello from mobykit"
	}
	host, _ := os.Hostname()
	fmt.Printf("%s (pid %d, host %s)\n", msg, os.Getpid(), host)
	if *after > 0 {
		time.Sleep(*after)
	}
	if !*sleep && *every == 0 {
		os.Exit(*exit)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	var tick <-chan time.Time
	if *every > 0 {
		tick = time.NewTicker(*every).C
	}
	for {
		select {
		case s := <-sig:
			fmt.Printf("%s: stopping on %v\n", msg, s)
			os.Exit(*exit)
		case <-tick:
			fmt.Println(msg)
		}
	}
}
