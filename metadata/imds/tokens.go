package imds

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// An IMDSv2 token is its own record: a version byte, its expiry (Unix seconds, big endian) and
// the first 16 bytes of HMAC-SHA256 of those 9 bytes under the key of the VM it was issued to,
// base64url-encoded. Nothing is stored per token: issuing one is a hash, checking one is a map
// lookup (the VM's key) and a hash, and expired tokens need no sweeping. A token only verifies
// under its own VM's key, so it is bound to that VM; Unregister drops the key, revoking every
// token of the VM, and a VM registered again under the same ID gets a new key.
const (
	tokenVersion = 1
	tokenMACLen  = 16
	tokenRawLen  = 1 + 8 + tokenMACLen
)

var tokenLen = base64.RawURLEncoding.EncodedLen(tokenRawLen)

func tokenMAC(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)[:tokenMACLen]
}

// issueToken returns a token for instanceID valid for ttl, or false if it is not registered.
func (s *Server) issueToken(instanceID string, ttl time.Duration) (string, bool) {
	s.mu.RLock()
	e, ok := s.byID[instanceID]
	var key []byte
	if ok {
		key = e.key
	}
	s.mu.RUnlock()
	if !ok {
		return "", false
	}
	b := make([]byte, 9, tokenRawLen)
	b[0] = tokenVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(s.now().Add(ttl).Unix()))
	b = append(b, tokenMAC(key, b)...)
	return base64.RawURLEncoding.EncodeToString(b), true
}

// validToken reports whether tok was issued to instanceID (under its current registration) and
// has not expired.
func (s *Server) validToken(instanceID, tok string) bool {
	if len(tok) != tokenLen {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != tokenRawLen || b[0] != tokenVersion {
		return false
	}
	s.mu.RLock()
	e, ok := s.byID[instanceID]
	var key []byte
	if ok {
		key = e.key
	}
	s.mu.RUnlock()
	if !ok || !hmac.Equal(b[9:], tokenMAC(key, b[:9])) {
		return false
	}
	return s.now().Unix() < int64(binary.BigEndian.Uint64(b[1:9]))
}
