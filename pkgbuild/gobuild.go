package pkgbuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// moduleRoot returns the folder holding the go.mod that encloses dir.
func moduleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		d = p
	}
}

func goEnv(arch string, cgo bool) []string {
	c := "0"
	if cgo {
		c = "1"
	}
	env := append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED="+c, "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if cgo {
		env = append(env, "CC="+cCompiler(arch))
	}
	return env
}

// crossTriplets are the GNU triplets of Debian's cross compilers (gcc-TRIPLET) by GOARCH.
var crossTriplets = map[string]string{
	"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "arm": "arm-linux-gnueabihf",
	"386": "i686-linux-gnu", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu",
	"riscv64": "riscv64-linux-gnu",
}

// cCompiler is the C compiler cgo uses for arch: gcc for the host's architecture, else
// Debian's cross compiler TRIPLET-gcc (packages gcc-TRIPLET and libc6-dev-DEBARCH-cross).
func cCompiler(arch string) string {
	if arch == runtime.GOARCH {
		return "gcc"
	}
	if t, ok := crossTriplets[arch]; ok {
		return t + "-gcc"
	}
	return "no-cross-compiler-for-" + arch
}

// crossPackages names the Debian packages that provide cCompiler(arch).
func crossPackages(arch string) string {
	if arch == runtime.GOARCH {
		return "gcc libc6-dev"
	}
	t := crossTriplets[arch]
	return fmt.Sprintf("gcc-%s libc6-dev-%s-cross", t, debArch[arch])
}

func runGo(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), dir, err, stderr.Bytes())
	}
	return out, nil
}

type listedPackage struct {
	Dir        string
	ImportPath string
	Standard   bool
	GoFiles    []string
	CgoFiles   []string
	CFiles     []string
	HFiles     []string
	SFiles     []string
	EmbedFiles []string
	Module     *struct {
		Path    string
		Version string
		Main    bool
	}
}

// hashGoPackage writes into h the identity of a main package and everything it imports:
// file names and contents of the main module's packages, module@version of the others.
func hashGoPackage(ctx context.Context, h hash.Hash, root, pkg, arch string, cgo bool, tags []string) error {
	args := []string{"list", "-deps", "-json"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	out, err := runGo(ctx, root, goEnv(arch, cgo), append(args, pkg)...)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	var lines []string
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("go list %s: %w", pkg, err)
		}
		if p.Standard {
			continue
		}
		if p.Module != nil && !p.Module.Main {
			lines = append(lines, "mod "+p.ImportPath+" "+p.Module.Path+"@"+p.Module.Version)
			continue
		}
		var files []string
		for _, l := range [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.HFiles, p.SFiles, p.EmbedFiles} {
			files = append(files, l...)
		}
		sort.Strings(files)
		for _, f := range files {
			sum, err := fileSHA256(filepath.Join(p.Dir, f))
			if err != nil {
				return fmt.Errorf("hash %s: %w", pkg, err)
			}
			lines = append(lines, "src "+p.ImportPath+"/"+f+" "+sum)
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(h, l)
	}
	return nil
}

// goVersion returns `go env GOVERSION`, part of every Go input's identity.
func goVersion(ctx context.Context) (string, error) {
	out, err := runGo(ctx, ".", os.Environ(), "env", "GOVERSION")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// buildGo builds pkg (a main package of the module at root) reproducibly and returns the binary.
func buildGo(ctx context.Context, root, pkg, arch string, cgo bool, tags []string, tmpDir string) ([]byte, error) {
	out := filepath.Join(tmpDir, "bin-"+strings.NewReplacer("/", "_", ".", "_").Replace(pkg))
	ldflags := "-s -w -buildid="
	if cgo {
		ldflags += " -extldflags -static"
	}
	args := []string{"build", "-trimpath", "-ldflags", ldflags, "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	if _, err := runGo(ctx, root, goEnv(arch, cgo), append(args, pkg)...); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", pkg, err)
	}
	os.Remove(out)
	return data, nil
}

// scratchModule prepares (once) a module under workDir that requires module@version, so that
// its main packages can be built with the versions its go.mod selects.
func scratchModule(ctx context.Context, workDir, moduleAtVersion string) (string, error) {
	name := strings.NewReplacer("/", "_", "@", "_").Replace(moduleAtVersion)
	dir := filepath.Join(workDir, "gomod", name)
	if _, err := os.Stat(filepath.Join(dir, "go.sum")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), name+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte("module mobykit.invalid/pkgbuild\n\ngo 1.22\n"), 0o644); err != nil {
		return "", err
	}
	if _, err := runGo(ctx, tmp, goEnv("amd64", false), "get", moduleAtVersion); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// another build prepared it meanwhile
		if _, serr := os.Stat(filepath.Join(dir, "go.sum")); serr == nil {
			return dir, nil
		}
		return "", fmt.Errorf("scratch module for %s: %w", moduleAtVersion, err)
	}
	return dir, nil
}
