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

// Probe checks that the file exists.
func (p *File) Probe(context.Context) error {
	_, err := os.Stat(p.path)
	return err
}

// Extract returns the file's contents.
func (p *File) Extract(context.Context, *config.Dir) ([]byte, error) {
	return os.ReadFile(p.path)
}
