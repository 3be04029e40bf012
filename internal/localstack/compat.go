package localstack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/streamcdp/streamcdp/schemas"
)

// compatEnforcer makes the local registry refuse incompatible Avro schemas
// the way Confluent's does. srfake accepts every registration and answers
// every compatibility check with true, so without this a producer in
// another language could register a breaking version locally that the real
// registry in production would refuse, and the evolution tests would prove
// nothing.
//
// It sits in front of the journal, so a refused registration is never
// journaled, and reads the subject's level and versions from the handler
// behind it. Schemas with references and non-Avro schemas pass through
// unchecked (CheckBackward resolves neither).
type compatEnforcer struct {
	next http.Handler
	// mu makes "check, then register" atomic: two registrations racing on
	// one subject must not both be checked against the same old version.
	mu sync.Mutex
}

// enforceCompatibility wraps a registry handler; see compatEnforcer.
func enforceCompatibility(next http.Handler) http.Handler {
	return &compatEnforcer{next: next}
}

// compatRoute says which request a compatibility rule applies to.
type compatRoute struct {
	subject  string
	register bool   // POST /subjects/{s}/versions
	version  string // POST /compatibility/subjects/{s}/versions/{v}; "" = per the level
}

// routeOf matches the two requests that need checking.
func routeOf(r *http.Request) (compatRoute, bool) {
	if r.Method != http.MethodPost {
		return compatRoute{}, false
	}
	parts := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	unescape := func(s string) (string, bool) {
		v, err := url.PathUnescape(s)
		return v, err == nil && v != ""
	}
	switch {
	case len(parts) == 3 && parts[0] == "subjects" && parts[2] == "versions":
		s, ok := unescape(parts[1])
		return compatRoute{subject: s, register: true}, ok
	case len(parts) == 4 && parts[0] == "compatibility" && parts[1] == "subjects" && parts[3] == "versions":
		s, ok := unescape(parts[2])
		return compatRoute{subject: s}, ok
	case len(parts) == 5 && parts[0] == "compatibility" && parts[1] == "subjects" && parts[3] == "versions":
		s, ok := unescape(parts[2])
		v, vok := unescape(parts[4])
		return compatRoute{subject: s, version: v}, ok && vok
	}
	return compatRoute{}, false
}

// schemaBody is the part of a registration body the check needs.
type schemaBody struct {
	Schema     string            `json:"schema"`
	SchemaType string            `json:"schemaType"`
	References []json.RawMessage `json:"references"`
}

func (c *compatEnforcer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, ok := routeOf(r)
	if !ok {
		c.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		writeRegistryError(w, http.StatusBadRequest, 400, "reading request body: "+err.Error())
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var sb schemaBody
	if err := json.Unmarshal(body, &sb); err != nil || sb.Schema == "" ||
		(sb.SchemaType != "" && !strings.EqualFold(sb.SchemaType, "AVRO")) || len(sb.References) > 0 {
		c.next.ServeHTTP(w, r) // the registry itself answers malformed or unchecked bodies
		return
	}
	if route.register {
		c.mu.Lock()
		defer c.mu.Unlock()
		// Re-registering a schema the subject already has returns its id
		// without a check, as Confluent does.
		if code, _ := c.call(r, http.MethodPost, "/subjects/"+url.PathEscape(route.subject), body); code == http.StatusOK {
			c.next.ServeHTTP(w, r)
			return
		}
	}
	problems, err := c.check(r, route, sb.Schema)
	if err != nil {
		writeRegistryError(w, http.StatusInternalServerError, 50001, "checking compatibility: "+err.Error())
		return
	}
	switch {
	case len(problems) == 0:
		c.next.ServeHTTP(w, r)
	case route.register:
		writeRegistryError(w, http.StatusConflict, 409, fmt.Sprintf(
			"Schema being registered is incompatible with an earlier schema for subject %q, details: [%s]",
			route.subject, strings.Join(problems, "; ")))
	default:
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(map[string]any{"is_compatible": false, "messages": problems})
	}
}

// check returns the problems of schema against the versions route asks for
// under the subject's effective level, nil when compatible.
func (c *compatEnforcer) check(r *http.Request, route compatRoute, schema string) ([]string, error) {
	level, err := c.level(r, route.subject)
	if err != nil {
		return nil, err
	}
	if level == sr.CompatNone {
		return nil, nil
	}
	transitive := level == sr.CompatBackwardTransitive || level == sr.CompatForwardTransitive || level == sr.CompatFullTransitive
	var versions []string
	switch {
	case route.version != "":
		versions = []string{route.version}
	case transitive:
		if versions, err = c.versions(r, route.subject); err != nil {
			return nil, err
		}
	default:
		versions = []string{"latest"}
	}
	backward := level != sr.CompatForward && level != sr.CompatForwardTransitive
	forward := level != sr.CompatBackward && level != sr.CompatBackwardTransitive
	var problems []string
	for _, v := range versions {
		old, version, found, err := c.schemaAt(r, route.subject, v)
		if err != nil {
			return nil, err
		}
		if !found {
			continue // no such version: nothing to be incompatible with
		}
		var ps []string
		if backward { // the new schema reads data written with the old
			p, err := schemas.CheckBackward(schema, old)
			if err != nil {
				return []string{err.Error()}, nil
			}
			ps = append(ps, p...)
		}
		if forward { // the old schema reads data written with the new
			p, err := schemas.CheckBackward(old, schema)
			if err != nil {
				return []string{err.Error()}, nil
			}
			for _, s := range p {
				ps = append(ps, "old schema reading new data: "+s)
			}
		}
		for _, p := range ps {
			problems = append(problems, fmt.Sprintf("%s with version %d: %s", level, version, p))
		}
	}
	return problems, nil
}

// level is the subject's compatibility level, else the global one, else
// BACKWARD (Confluent's default).
func (c *compatEnforcer) level(r *http.Request, subject string) (sr.CompatibilityLevel, error) {
	for _, path := range []string{"/config/" + url.PathEscape(subject) + "?defaultToGlobal=true", "/config"} {
		code, body := c.call(r, http.MethodGet, path, nil)
		if code == http.StatusNotFound {
			continue
		}
		if code != http.StatusOK {
			return 0, fmt.Errorf("GET %s: %d %s", path, code, body)
		}
		var resp struct {
			Level sr.CompatibilityLevel `json:"compatibilityLevel"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			return 0, fmt.Errorf("GET %s: %w", path, err)
		}
		return resp.Level, nil
	}
	return sr.CompatBackward, nil
}

// versions lists the subject's live versions; none when it does not exist.
func (c *compatEnforcer) versions(r *http.Request, subject string) ([]string, error) {
	path := "/subjects/" + url.PathEscape(subject) + "/versions"
	code, body := c.call(r, http.MethodGet, path, nil)
	if code == http.StatusNotFound {
		return nil, nil
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", path, code, body)
	}
	var vs []int
	if err := json.Unmarshal(body, &vs); err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strconv.Itoa(v)
	}
	return out, nil
}

// schemaAt reads one version of the subject; found is false when the
// subject or version does not exist.
func (c *compatEnforcer) schemaAt(r *http.Request, subject, version string) (schema string, v int, found bool, err error) {
	path := "/subjects/" + url.PathEscape(subject) + "/versions/" + url.PathEscape(version)
	code, body := c.call(r, http.MethodGet, path, nil)
	if code == http.StatusNotFound {
		return "", 0, false, nil
	}
	if code != http.StatusOK {
		return "", 0, false, fmt.Errorf("GET %s: %d %s", path, code, body)
	}
	var ss struct {
		Version    int    `json:"version"`
		Schema     string `json:"schema"`
		SchemaType string `json:"schemaType"`
	}
	if err := json.Unmarshal(body, &ss); err != nil {
		return "", 0, false, fmt.Errorf("GET %s: %w", path, err)
	}
	if ss.SchemaType != "" && !strings.EqualFold(ss.SchemaType, "AVRO") {
		return "", 0, false, nil // an Avro schema cannot be checked against another type
	}
	return ss.Schema, ss.Version, true, nil
}

// call sends a request to the wrapped registry and returns its status and
// body.
func (c *compatEnforcer) call(parent *http.Request, method, target string, body []byte) (int, []byte) {
	req := httptest.NewRequest(method, target, bytes.NewReader(body)).WithContext(parent.Context())
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	rec := httptest.NewRecorder()
	c.next.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func writeRegistryError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": code, "message": msg})
}
