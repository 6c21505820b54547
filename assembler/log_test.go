package assembler

import (
	"errors"
	"io"
	"log"
	"net/http"
)

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("network disabled by the test")
}
