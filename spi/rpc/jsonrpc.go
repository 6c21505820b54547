package rpc

import (
	"encoding/json"
	"errors"
)

// JSON-RPC 2.0 error codes used by InfraKit's server (gorilla/rpc v2 json2).
const (
	CodeServer         = -32000 // an error returned by the implementation, unknown service/method
	CodeInvalidRequest = -32600 // wrong jsonrpc version, params that do not decode
	CodeParse          = -32700 // a body that decodes only partly
)

// Error is a JSON-RPC error object. Its Error() is Message alone, so that the text a plugin
// returned reaches users unchanged, as with InfraKit's client.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func (e *Error) Error() string { return e.Message }

// errorFor turns an implementation error into the error object sent on the wire: an *Error in
// the chain keeps its code, anything else is -32000 with err.Error() as message.
func errorFor(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		if e.Data == nil {
			return &Error{Code: e.Code, Message: err.Error()}
		}
		return &Error{Code: e.Code, Message: err.Error(), Data: e.Data}
	}
	return &Error{Code: CodeServer, Message: err.Error()}
}

// serverRequest is the envelope as the server decodes it. The name matters: it appears in the
// decoder's messages for -32700 errors, as in gorilla's json2.
type serverRequest struct {
	Version string           `json:"jsonrpc"`
	Method  string           `json:"method"`
	Params  *json.RawMessage `json:"params"`
	Id      *json.RawMessage `json:"id"`
}

// serverResponse is the envelope the server writes: exactly one of result and error.
type serverResponse struct {
	Version string           `json:"jsonrpc"`
	Result  any              `json:"result,omitempty"`
	Error   *Error           `json:"error,omitempty"`
	Id      *json.RawMessage `json:"id"`
}

// clientRequest is the envelope the client sends; the id is an unsigned 63-bit integer.
type clientRequest struct {
	Version string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
	Id      uint64 `json:"id"`
}

// clientResponse is the envelope the client decodes.
type clientResponse struct {
	Version string           `json:"jsonrpc"`
	Result  *json.RawMessage `json:"result"`
	Error   *json.RawMessage `json:"error"`
	Id      *json.RawMessage `json:"id"`
}

// errNullResult is InfraKit's client error for a reply without a result.
var errNullResult = errors.New("result is null")

// decodeClientResponse applies json2.DecodeClientResponse's rules (docs/infrakit/PROTOCOL.md §2): error wins,
// a non-object error is used as raw text, a missing or null result is an error.
func decodeClientResponse(body []byte, reply any) error {
	var c clientResponse
	if err := json.Unmarshal(body, &c); err != nil {
		return err
	}
	if c.Error != nil && string(*c.Error) != "null" {
		e := &Error{}
		if err := json.Unmarshal(*c.Error, e); err != nil {
			return &Error{Code: CodeServer, Message: string(*c.Error)}
		}
		return e
	}
	if c.Result == nil || string(*c.Result) == "null" {
		return errNullResult
	}
	return json.Unmarshal(*c.Result, reply)
}
