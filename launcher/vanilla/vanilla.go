// Package vanilla is InfraKit's vanilla flavor (docs/infrakit/PROTOCOL.md §7): it merges its Tags into the
// instance spec, joins its Init lines (after any Init already there) with "\n", appends its
// Attachments, reports every instance Healthy and drains nothing. It is the simplest flavor
// a group can use, and a test partner for the group controller.
package vanilla

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/mobykit/mobykit/spi"
)

// Properties are the vanilla flavor's Properties in a group spec.
type Properties struct {
	// Init lines, joined with "\n" after the spec's own Init.
	Init []string
	// InitScriptTemplateURL is an alternative to Init: str://<text> or file://<path>. (InfraKit
	// rendered it as a template; mobykit takes the text as is.)
	InitScriptTemplateURL string
	// Tags are merged into the instance's tags (they win over equal keys).
	Tags map[string]string
	// Attachments are appended to the spec's.
	Attachments []spi.Attachment
}

// Flavor is the vanilla flavor.
type Flavor struct{}

var _ spi.Flavor = Flavor{}

func parse(props spi.Any) (Properties, error) {
	var p Properties
	if len(bytes.TrimSpace(props)) == 0 || string(bytes.TrimSpace(props)) == "null" {
		return p, nil
	}
	if err := json.Unmarshal(props, &p); err != nil {
		return p, fmt.Errorf("vanilla flavor properties: %w", err)
	}
	return p, nil
}

// Validate checks that the properties decode and that Init and InitScriptTemplateURL are not
// both given.
func (Flavor) Validate(_ context.Context, props spi.Any, _ spi.Allocation) error {
	p, err := parse(props)
	if err != nil {
		return err
	}
	if len(p.Init) > 0 && p.InitScriptTemplateURL != "" {
		//lint:ignore ST1005 InfraKit's exact text, fixed by vectors/error.flavor.validate.json
		return fmt.Errorf(`Either "Init" or "InitScriptTemplateURL" can be specified but not both`)
	}
	if p.InitScriptTemplateURL != "" {
		if _, err := initScript(p.InitScriptTemplateURL); err != nil {
			return err
		}
	}
	return nil
}

func initScript(url string) (string, error) {
	switch {
	case strings.HasPrefix(url, "str://"):
		return strings.TrimPrefix(url, "str://"), nil
	case strings.HasPrefix(url, "file://"):
		b, err := os.ReadFile(strings.TrimPrefix(url, "file://"))
		if err != nil {
			return "", fmt.Errorf("vanilla flavor InitScriptTemplateURL: %w", err)
		}
		return string(b), nil
	}
	return "", fmt.Errorf("vanilla flavor InitScriptTemplateURL %q: only str:// and file:// are supported", url)
}

// Prepare merges tags, init and attachments into spec. The incoming tags (infrakit.*) are kept.
func (Flavor) Prepare(_ context.Context, props spi.Any, spec spi.Spec, _ spi.Allocation, _ spi.Index) (spi.Spec, error) {
	p, err := parse(props)
	if err != nil {
		return spec, err
	}
	var lines []string
	if spec.Init != "" {
		lines = append(lines, spec.Init)
	}
	lines = append(lines, p.Init...)
	if p.InitScriptTemplateURL != "" {
		s, err := initScript(p.InitScriptTemplateURL)
		if err != nil {
			return spec, err
		}
		lines = append(lines, s)
	}
	spec.Init = strings.Join(lines, "\n")
	if len(p.Tags) > 0 {
		tags := make(map[string]string, len(spec.Tags)+len(p.Tags))
		for k, v := range spec.Tags {
			tags[k] = v
		}
		for k, v := range p.Tags {
			tags[k] = v
		}
		spec.Tags = tags
	}
	spec.Attachments = append(spec.Attachments, p.Attachments...)
	return spec, nil
}

// Healthy reports every instance Healthy.
func (Flavor) Healthy(context.Context, spi.Any, spi.Description) (spi.Health, error) {
	return spi.Healthy, nil
}

// Drain does nothing.
func (Flavor) Drain(context.Context, spi.Any, spi.Description) error { return nil }
