package profileapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// conformance checks requests and responses against openapi.yaml with
// kin-openapi, and records which documented (operation, status) pairs the
// tests produced.
type conformance struct {
	doc    *openapi3.T
	router routers.Router
	mu     sync.Mutex
	seen   map[string]bool
}

func newConformance(t testing.TB) *conformance {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPIYAML())
	if err != nil {
		t.Fatalf("loading openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	// The document's server is an example address; tests serve on other
	// ports, and the router matches servers by host.
	doc.Servers = nil
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &conformance{doc: doc, router: r, seen: map[string]bool{}}
}

// check validates one exchange. A request the test made invalid on
// purpose (wantBadRequest) still needs a response that conforms. It
// returns an error for a route the document does not have.
func (c *conformance) check(req *http.Request, status int, header http.Header, body []byte, wantBadRequest bool) error {
	ctx := context.Background()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("%s %s: not in the document: %w", req.Method, req.URL, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && !wantBadRequest {
		return fmt.Errorf("%s %s: request does not conform: %w", req.Method, req.URL, err)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%s %s -> %d: response does not conform: %w\nbody: %s", req.Method, req.URL, status, err, body)
	}
	c.mu.Lock()
	c.seen[fmt.Sprintf("%s %d", route.Operation.OperationID, status)] = true
	c.mu.Unlock()
	return nil
}

// missing lists the documented (operation, status) pairs never seen.
func (c *conformance) missing() []string {
	var out []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				if k := op.OperationID + " " + code; !c.seen[k] {
					out = append(out, fmt.Sprintf("%s (%s %s)", k, method, path))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestRoutesMatchDocument: every route served is documented and every
// documented path is served.
func TestRoutesMatchDocument(t *testing.T) {
	c := newConformance(t)
	var doc []string
	for path := range c.doc.Paths.Map() {
		doc = append(doc, path)
	}
	served := slices.Clone(Routes)
	slices.Sort(doc)
	slices.Sort(served)
	if !slices.Equal(doc, served) {
		t.Errorf("documented paths %v, served %v", doc, served)
	}
	for _, code := range c.doc.Components.Schemas["Error"].Value.Properties["error"].Value.Properties["code"].Value.Enum {
		if !slices.Contains(allCodes, code.(string)) {
			t.Errorf("documented error code %v is not one the handler writes", code)
		}
	}
	if len(c.doc.Components.Schemas["Error"].Value.Properties["error"].Value.Properties["code"].Value.Enum) != len(allCodes) {
		t.Errorf("error codes: document %v, handler %v", c.doc.Components.Schemas["Error"].Value.Properties["error"].Value.Properties["code"].Value.Enum, allCodes)
	}
}

var allCodes = []string{CodeUnauthorized, CodeNotFound, CodeInvalidArgument, CodeMethodNotAllowed, CodeEventsUnavailable, CodeUnavailable, CodeOverloaded, CodeInternal}

// TestOpenAPIServedAsJSON: /openapi.json is the YAML document.
func TestOpenAPIServedAsJSON(t *testing.T) {
	loader := openapi3.NewLoader()
	fromJSON, err := loader.LoadFromData(openAPIJSON)
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := loader.LoadFromData(OpenAPIYAML())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := fromJSON.MarshalJSON()
	b, _ := fromYAML.MarshalJSON()
	if !bytes.Equal(a, b) {
		t.Error("openapi.json differs from openapi.yaml")
	}
	if !strings.HasPrefix(fromJSON.OpenAPI, "3.") {
		t.Errorf("openapi version %q", fromJSON.OpenAPI)
	}
}
