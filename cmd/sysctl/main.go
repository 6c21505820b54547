// Command sysctl applies kernel settings from sysctl.d files, as LinuxKit's sysctl image does:
// every *.conf of /etc/sysctl.d then of /hostetc/sysctl.d (the host's, when bound), in name
// order, later files winning. Lines are "key = value" ("a.b.c" or "a/b/c"); "#" and ";" start
// comments; a leading "-" on a key ignores errors for it.
package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	dirs := []string{"/etc/sysctl.d", "/hostetc/sysctl.d"}
	if len(os.Args) > 1 {
		dirs = os.Args[1:]
	}
	failed := false
	for _, d := range dirs {
		files, _ := filepath.Glob(filepath.Join(d, "*.conf"))
		sort.Strings(files)
		for _, f := range files {
			if err := apply(f); err != nil {
				slog.Error("sysctl", "file", f, "err", err)
				failed = true
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}

func apply(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var errs []string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			errs = append(errs, fmt.Sprintf("line %d: no '='", n))
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		optional := strings.HasPrefix(k, "-")
		k = strings.TrimPrefix(k, "-")
		if strings.Contains(k, "..") {
			errs = append(errs, fmt.Sprintf("line %d: bad key %q", n, k))
			continue
		}
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if err := os.WriteFile(p, []byte(v+"\n"), 0); err != nil && !optional {
			errs = append(errs, fmt.Sprintf("line %d: %s: %v", n, k, err))
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
