package provider

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// tlsProbeEnv makes the test binary probe the Equinix Metal provider at the URL it holds, with
// the agent's own configuration (DefaultConfig: the system's CA roots), and exit 0 if the probe
// succeeds. A fresh process is needed because Go reads the system roots once per process.
const tlsProbeEnv = "MOBYKIT_TEST_TLS_PROBE"

func TestMain(m *testing.M) {
	if url := os.Getenv(tlsProbeEnv); url != "" {
		cfg := DefaultConfig()
		cfg.Endpoints.EquinixMetal = url
		if err := NewEquinixMetal(cfg).Probe(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestEquinixMetalVerifiesTLS: the HTTPS metadata service is trusted only through the system's
// CA roots (in the metadata image, the bundle at /etc/ssl/certs/ca-certificates.crt): a server
// whose certificate no root signs is refused, and the same server is accepted once its CA is
// in the file Go reads the roots from (SSL_CERT_FILE stands in for the image's bundle).
func TestEquinixMetalVerifiesTLS(t *testing.T) {
	srv := serveTLS(t, &cloud{values: map[string]string{
		"/metadata": `{"id":"dev-1","hostname":"metal-1","ssh_keys":[]}`,
		"/userdata": "",
	}})
	cfg := DefaultConfig()
	cfg.Endpoints.EquinixMetal = srv.URL
	err := NewEquinixMetal(cfg).Probe(context.Background())
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("probe of a server with an untrusted certificate: %v, want x509.UnknownAuthorityError", err)
	}

	dir := t.TempDir()
	bundle := filepath.Join(dir, "ca-certificates.crt")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(bundle, pemCert, 0o644); err != nil {
		t.Fatal(err)
	}
	emptyDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	probe := func(certFile string) error {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), tlsProbeEnv+"="+srv.URL, "SSL_CERT_FILE="+certFile, "SSL_CERT_DIR="+emptyDir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	if err := probe(bundle); err != nil {
		t.Errorf("probe with the server's CA in the bundle: %v", err)
	}
	if err := os.WriteFile(bundle, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := probe(bundle); err == nil {
		t.Error("probe with an empty bundle succeeded")
	}
}

func serveTLS(t *testing.T, c *cloud) *httptest.Server {
	c.t = t
	s := httptest.NewTLSServer(c)
	t.Cleanup(s.Close)
	return s
}
