package goplugin

import (
	"encoding/json"

	"google.golang.org/grpc/encoding"
)

// codecName is the gRPC content-subtype of mobykit's JSON messages.
const codecName = "mobykit-json"

// jsonCodec encodes gRPC messages with encoding/json; a *json.RawMessage is passed through.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error {
	if raw, ok := v.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], data...)
		return nil
	}
	return json.Unmarshal(data, v)
}
func (jsonCodec) Name() string { return codecName }

func init() { encoding.RegisterCodec(jsonCodec{}) }
