package spec

import (
	"fmt"
	"strings"
)

// Error is a spec error tied to a place in a spec file. Every error Parse,
// Merge and Validate return is (or wraps) an *Error.
type Error struct {
	// File is the spec file name as given to Parse.
	File string
	// Line and Column are 1-based; 0 when unknown.
	Line, Column int
	// Field is the path of the offending field, e.g. "services[2].binds[0]".
	Field string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Pos is a place in a spec file.
type Pos struct {
	File   string
	Line   int
	Column int
	// Field is the path of the field, e.g. "onboot[1]".
	Field string
}

func (p Pos) String() string {
	if p.File == "" {
		return p.Field
	}
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.File, p.Field)
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Field)
}

func (p Pos) errorf(format string, args ...any) *Error {
	return &Error{File: p.File, Line: p.Line, Column: p.Column, Field: p.Field, Msg: fmt.Sprintf(format, args...)}
}

func (p Pos) wrap(err error, format string, args ...any) *Error {
	e := p.errorf(format, args...)
	e.Err = err
	return e
}
