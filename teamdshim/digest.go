package teamdshim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// ConfigDigest fingerprints a teamd JSON config independently of key order
// and white space, so that the old and the new container agree on it when
// teammgrd renders the same configuration twice.
func ConfigDigest(config []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.UseNumber() // 64-bit numbers stay exact
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("teamd config: %w", err)
	}
	if dec.More() {
		return "", fmt.Errorf("teamd config: data after the JSON value")
	}
	canon, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		return "", fmt.Errorf("teamd config: %w", err)
	}
	sum := sha256.Sum256(canon)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
