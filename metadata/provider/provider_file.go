package provider

import (
	"context"
	"os"

	"github.com/mobykit/mobykit/metadata/config"
)

// File reads userdata from a local file ("file=PATH").
type File struct{ path string }

// NewFile returns the provider for path.
func NewFile(path string) *File { return &File{path: path} }

func (p *File) String() string { return p.path }

// Probe checks that the file exists and is not over config.MaxData.
func (p *File) Probe(context.Context) error {
	st, err := os.Stat(p.path)
	if err != nil {
		return err
	}
	if st.Mode().IsRegular() && st.Size() > config.MaxData {
		return &config.TooLargeError{Source: p.path, Size: st.Size(), Limit: config.MaxData}
	}
	return nil
}

// Extract returns the file's contents, refusing a file over config.MaxData.
func (p *File) Extract(context.Context, *config.Dir) ([]byte, error) {
	return config.ReadFileMax(p.path, config.MaxData)
}
