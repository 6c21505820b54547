package testenv

import (
	"net/http"
	"os"
	"testing"
)

func TestRegistryAnswers(t *testing.T) {
	addr := Registry(t)
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ = %d, want 200", resp.StatusCode)
	}
}

func TestKernelFetched(t *testing.T) {
	k := Kernel(t)
	st, err := os.Stat(k)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < 1<<20 {
		t.Fatalf("%s is only %d bytes", k, st.Size())
	}
}

func TestMotoAnswers(t *testing.T) {
	url := Moto(t)
	resp, err := http.Get(url + "/moto-api/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
