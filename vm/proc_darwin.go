package vm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// sZomb is SZOMB from <sys/proc.h>.
const sZomb = 5

func readStat(pid int) (stat, error) {
	k, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil {
		return stat{}, err
	}
	if int(k.Proc.P_pid) != pid {
		return stat{}, fmt.Errorf("pid %d: no such process", pid)
	}
	st := stat{state: 'R', startTime: uint64(k.Proc.P_starttime.Sec)*1e6 + uint64(k.Proc.P_starttime.Usec)}
	if k.Proc.P_stat == sZomb {
		st.state = 'Z'
	}
	return st, nil
}

// readArgs decodes kern.procargs2: argc (int32), the executable path, NUL padding, then argc
// NUL-terminated arguments (followed by the environment, ignored).
func readArgs(pid int) ([]string, error) {
	b, err := unix.SysctlRaw("kern.procargs2", pid)
	if err != nil {
		return nil, err
	}
	if len(b) < 4 {
		return nil, errors.New("kern.procargs2: short")
	}
	argc := int(binary.LittleEndian.Uint32(b[:4]))
	b = b[4:]
	i := bytes.IndexByte(b, 0) // skip the executable path
	if i < 0 {
		return nil, errors.New("kern.procargs2: no executable path")
	}
	b = bytes.TrimLeft(b[i:], "\x00")
	args := make([]string, 0, argc)
	for len(args) < argc && len(b) > 0 {
		j := bytes.IndexByte(b, 0)
		if j < 0 {
			j = len(b)
		}
		args = append(args, string(b[:j]))
		if j == len(b) {
			break
		}
		b = b[j+1:]
	}
	return args, nil
}
