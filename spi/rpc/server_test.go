package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mobykit/mobykit/spi"
)

// TestEnvelopeEdges covers envelope cases the vectors do not: they follow gorilla json2.
func TestEnvelopeEdges(t *testing.T) {
	h, err := NewHandler(Instance(newMem()))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, body, want string }{
		{"ill-formed method", `{"jsonrpc":"2.0","method":"Validate","params":{},"id":1}`,
			`{"jsonrpc":"2.0","error":{"code":-32000,"message":"rpc: service/method request ill-formed: \"Validate\"","data":null},"id":1}`},
		{"partly decodable body", `{"jsonrpc":"2.0","method":5,"id":7}`,
			`{"jsonrpc":"2.0","error":{"code":-32700,"message":"json: cannot unmarshal number into Go struct field serverRequest.method of type string","data":{"jsonrpc":"2.0","method":"","params":null,"id":7}},"id":7}`},
		{"missing params", `{"jsonrpc":"2.0","method":"Instance.Validate","id":"x"}`,
			`{"jsonrpc":"2.0","result":{"Type":"","OK":true},"id":"x"}`},
		{"case-insensitive params", `{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{"type":"","tags":{"q":"r"},"properties":true,"extra":1},"id":9223372036854775807}`,
			`{"jsonrpc":"2.0","result":{"Type":"","Descriptions":[]},"id":9223372036854775807}`},
		{"id null is a notification", `{"jsonrpc":"2.0","method":"Instance.Validate","params":{},"id":null}`, ``},
		{"html escaped", `{"jsonrpc":"2.0","method":"Instance.Validate","params":{"Properties":"bad <&>"},"id":1}`,
			`{"jsonrpc":"2.0","error":{"code":-32000,"message":"invalid properties \"bad \u003c\u0026\u003e\"","data":null},"id":1}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := post(t, h, []byte(c.body))
			if w.Code != 200 {
				t.Fatalf("status %d", w.Code)
			}
			want := c.want
			if want != "" {
				want += "\n"
			}
			if w.Body.String() != want {
				t.Errorf("got  %q\nwant %q", w.Body.String(), want)
			}
		})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/other", bytes.NewReader(nil)))
	if w.Code != 404 {
		t.Errorf("POST /other: %d", w.Code)
	}
}

// TestTCPClient: the .listen variant, a client addressing tcp://host:port.
func TestTCPClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(Instance(newMem()))
	if err != nil {
		t.Fatal(err)
	}
	s := StartListener(ln, h)
	defer s.Close()
	c := NewInstanceClient("tcp://"+ln.Addr().String(), "")
	id, err := c.Provision(context.Background(), spi.Spec{})
	if err != nil || *id == "" {
		t.Fatalf("%v %v", id, err)
	}
}

func TestDuplicateInterface(t *testing.T) {
	if _, err := NewHandler(Instance(newMem()), Instance(newMem())); err == nil {
		t.Fatal("two Instance plugins on one socket accepted")
	}
	if _, err := NewHandler(); err == nil {
		t.Fatal("empty handler accepted")
	}
	h, err := NewHandler(Instance(newMem()), Flavor(nopFlavor{}))
	if err != nil {
		t.Fatal(err)
	}
	w := post(t, h, []byte(`{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":1}`))
	want := `{"jsonrpc":"2.0","result":{"Objects":{"Flavor/0.1.1":[{"Name":".","ProxyFor":""}],"Instance/0.6.1":[{"Name":".","ProxyFor":""}]}},"id":1}` + "\n"
	if w.Body.String() != want {
		t.Errorf("got %s", w.Body)
	}
}

// FuzzServe feeds arbitrary bodies to the server: it must never panic, always answer 200, and
// answer with nothing or one JSON-RPC 2.0 envelope holding exactly one of result and error.
func FuzzServe(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"Instance.Validate","params":{},"id":1}`,
		`{"jsonrpc":"2.0","method":"Instance.Provision","params":[{"Spec":{"Tags":{"a":"b"}}}],"id":"x"}`,
		`{"jsonrpc":"1.0","method":"Instance.Validate","id":1}`,
		`{"jsonrpc":"2.0","method":"Handshake.Hello","id":18446744073709551615}`,
		`{"jsonrpc":"2.0","method":"Instance.Label","params":{"Instance":1},"id":2}`,
		`[1,2]`, `null`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	h, err := NewHandler(InstanceTypes(map[string]spi.Instance{".": newMem(), "t": newMem()}))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := post(t, h, body)
		if w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
		if w.Body.Len() == 0 {
			return
		}
		var env map[string]json.RawMessage
		if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
			t.Fatalf("reply is not JSON: %q", w.Body)
		}
		_, hasResult := env["result"]
		_, hasError := env["error"]
		if string(env["jsonrpc"]) != `"2.0"` || hasResult == hasError || string(env["result"]) == "null" {
			t.Fatalf("bad envelope %s", w.Body)
		}
	})
}

// BenchmarkCallOverSocket measures one Instance call through client and server on a unix
// socket (keep-alive connection reused).
func BenchmarkCallOverSocket(b *testing.B) {
	dir := b.TempDir()
	s, err := Start(dir+"/b", Instance(newMem()))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := NewInstanceClient(dir+"/b", "")
	ctx := context.Background()
	tags := map[string]string{"infrakit.group": "none"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.DescribeInstances(ctx, tags, true); err != nil {
			b.Fatal(err)
		}
	}
}
