package sysinit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Console serialises lines written to the system console.
type Console struct {
	mu  sync.Mutex
	out io.Writer
}

// NewConsole writes to w (normally /dev/console).
func NewConsole(w io.Writer) *Console { return &Console{out: w} }

// Printf writes one "mobykit init: ..." line.
func (c *Console) Printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.out, "mobykit init: "+format+"\n", args...)
}

// Line writes a raw line.
func (c *Console) Line(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	io.WriteString(c.out, s+"\n")
}

// LogLimit is the size at which a service's log file is rotated: NAME.log becomes NAME.log.0
// (replacing the previous one), so at most twice this stays in memory (/var/log is in RAM).
var LogLimit int64 = 8 << 20

// logPipe returns the write end of a pipe whose lines are appended to logFile (rotated at
// LogLimit) and copied to the console prefixed with "name: ". The copy ends when every writer
// has closed the pipe.
func (c *Console) logPipe(name, logFile string) (*os.File, <-chan struct{}, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		r.Close()
		w.Close()
		return nil, nil, err
	}
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		r.Close()
		w.Close()
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.Close()
		defer func() { lf.Close() }()
		br := bufio.NewReader(r)
		size := int64(0)
		if st, err := lf.Stat(); err == nil {
			size = st.Size()
		}
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				if size+int64(len(line)) > LogLimit && size > 0 {
					lf.Close()
					os.Rename(logFile, logFile+".0")
					if nf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640); err == nil {
						lf, size = nf, 0
					}
				}
				n, _ := lf.WriteString(line)
				size += int64(n)
				if line[len(line)-1] == '\n' {
					line = line[:len(line)-1]
				}
				c.Line(name + ": " + line)
			}
			if err != nil {
				return
			}
		}
	}()
	return w, done, nil
}
