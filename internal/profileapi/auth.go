package profileapi

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// MinTokenLength refuses tokens short enough to guess.
const MinTokenLength = 16

// Tokens are the bearer tokens the API accepts. Only their SHA-256 digests
// are kept: comparing fixed-length digests in constant time reveals
// neither a token's content nor its length through timing.
type Tokens struct {
	digests [][sha256.Size]byte
}

// ErrNoTokens is returned when authentication is on and no token is
// configured.
var ErrNoTokens = errors.New("no API tokens configured: set CDP_API_TOKENS (comma separated) or --tokens-file " +
	"(one token per line), or pass --insecure-no-auth to serve profiles, which are personal data, to anyone")

// ParseTokens reads tokens from env (comma or whitespace separated) and
// from the file's lines (blank lines and # comments skipped); file may be
// "". It fails when a token is shorter than MinTokenLength or none is
// given.
func ParseTokens(env, file string) (*Tokens, error) {
	var raw []string
	raw = append(raw, strings.FieldsFunc(env, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })...)
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading the tokens file: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if strings.ContainsAny(line, " \t") {
				return nil, fmt.Errorf("tokens file %s line %d: a token has no spaces (one token per line)", file, n)
			}
			raw = append(raw, line)
		}
	}
	t := &Tokens{}
	for i, tok := range raw {
		if len(tok) < MinTokenLength {
			return nil, fmt.Errorf("API token %d of %d is %d characters long: want at least %d (e.g. `openssl rand -hex 32`)", i+1, len(raw), len(tok), MinTokenLength)
		}
		t.digests = append(t.digests, sha256.Sum256([]byte(tok)))
	}
	if len(t.digests) == 0 {
		return nil, ErrNoTokens
	}
	return t, nil
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.digests) }

// check returns the fingerprint of the matching token (for access logs:
// which client, without the secret), or "" when none matches. Every token
// is compared, so the time taken does not say which one matched.
func (t *Tokens) check(token string) string {
	d := sha256.Sum256([]byte(token))
	match := -1
	for i := range t.digests {
		if subtle.ConstantTimeCompare(d[:], t.digests[i][:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return ""
	}
	return hex.EncodeToString(t.digests[match][:4])
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
