package profileapi

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/cors"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"
)

//go:embed openapi.yaml
var openAPIYAML []byte

// OpenAPIYAML returns the API's OpenAPI 3 document as written.
func OpenAPIYAML() []byte { return append([]byte(nil), openAPIYAML...) }

// openAPIJSON is the document as JSON, converted once.
var openAPIJSON = func() []byte {
	var doc any
	if err := yaml.Unmarshal(openAPIYAML, &doc); err != nil {
		panic(fmt.Sprintf("profileapi: openapi.yaml: %v", err))
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(fmt.Sprintf("profileapi: openapi.yaml as JSON: %v", err))
	}
	return b
}()

// Error codes: stable, documented in openapi.yaml's Error schema.
const (
	CodeUnauthorized      = "unauthorized"
	CodeNotFound          = "not_found"
	CodeInvalidArgument   = "invalid_argument"
	CodeMethodNotAllowed  = "method_not_allowed"
	CodeEventsUnavailable = "events_unavailable"
	CodeUnavailable       = "unavailable"
	CodeOverloaded        = "overloaded"
	CodeInternal          = "internal"
)

// Options configure the HTTP handler.
type Options struct {
	// Tokens are the accepted bearer tokens; nil turns authentication off
	// (--insecure-no-auth).
	Tokens *Tokens
	// CORSOrigins may call the API from a browser; empty: CORS off.
	CORSOrigins []string
	// RequestTimeout bounds a request's store reads (default 2 s).
	RequestTimeout time.Duration
	// Logger gets one access log line per request (default: none).
	Logger *zap.Logger
	// Registerer gets the request metrics (may be nil).
	Registerer prometheus.Registerer
	// Ready are the readiness checks of /readyz.
	Ready []func(context.Context) error
	// MaxInFlight bounds the /v1 requests served at once; more are refused
	// at once with 503 overloaded and Retry-After, rather than queueing
	// into timeouts. 0: DefaultMaxInFlight; negative: no bound.
	MaxInFlight int
}

// DefaultMaxInFlight is MaxInFlight's default: 64 requests per CPU. A
// request takes about 0.1-0.2 ms of CPU, so a full house is some 10 ms of
// work per CPU: enough to ride out bursts and GC pauses, small enough that
// a request admitted under overload still answers in milliseconds.
func DefaultMaxInFlight() int { return 64 * runtime.GOMAXPROCS(0) }

// RetryAfterSeconds is the Retry-After of a 503: an overload or a store
// that did not answer is usually over within a second.
const RetryAfterSeconds = 1

// Routes are the patterns the handler serves, as in openapi.yaml.
var Routes = []string{
	"/v1/profiles/{profile_id}",
	"/v1/profiles/by-identifier",
	"/v1/profiles/{profile_id}/events",
	"/healthz",
	"/readyz",
	"/openapi.json",
}

// NewHandler returns the API's HTTP handler.
func NewHandler(s *Service, o Options) (http.Handler, error) {
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight()
	}
	h := &handler{s: s, o: o}
	if o.MaxInFlight > 0 {
		h.slots = make(chan struct{}, o.MaxInFlight)
	}
	mux := http.NewServeMux()
	// Methods are checked in the handlers rather than in the patterns, so
	// a wrong method gets the JSON error, not the mux's plain text.
	mux.Handle(Routes[0], h.admit(h.auth(get(h.profile))))
	mux.Handle(Routes[1], h.admit(h.auth(get(h.byIdentifier))))
	mux.Handle(Routes[2], h.admit(h.auth(get(h.events))))
	mux.Handle(Routes[3], get(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	mux.Handle(Routes[4], get(h.ready))
	mux.Handle(Routes[5], get(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPIJSON)
	}))
	mux.Handle("/", h.auth(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no route "+r.URL.Path+"; see /openapi.json")
	}))
	var next http.Handler = mux
	if len(o.CORSOrigins) > 0 {
		// Before authentication: a browser's preflight carries no token.
		next = cors.New(cors.Options{AllowedOrigins: o.CORSOrigins, AllowedMethods: []string{http.MethodGet},
			AllowedHeaders: []string{"Authorization"}, MaxAge: 600}).Handler(next)
	}
	return h.observe(m, mux, timeout(o.RequestTimeout, next)), nil
}

type handler struct {
	s *Service
	o Options
	// slots holds a token per /v1 request being served (nil: no bound).
	slots chan struct{}
}

// admit serves a request if a slot is free and refuses it at once
// otherwise: under overload a quick 503 lets clients back off or go to
// another instance, where queueing would turn every request into a
// timeout. Health, readiness and the document are not counted, so probes
// still answer.
func (h *handler) admit(next http.Handler) http.Handler {
	if h.slots == nil {
		return next
	}
	msg := fmt.Sprintf("the API is serving its limit of %d requests at once; retry after %d s", cap(h.slots), RetryAfterSeconds)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case h.slots <- struct{}{}:
		default:
			retryAfter(w)
			writeError(w, http.StatusServiceUnavailable, CodeOverloaded, msg)
			return
		}
		defer func() { <-h.slots }()
		next.ServeHTTP(w, r)
	})
}

var retryAfterValue = []string{strconv.Itoa(RetryAfterSeconds)}

func retryAfter(w http.ResponseWriter) { w.Header()["Retry-After"] = retryAfterValue }

// clientKey carries the token fingerprint from auth to the access log.
type clientKey struct{}

// auth refuses a request without an accepted bearer token.
func (h *handler) auth(next http.HandlerFunc) http.Handler {
	if h.o.Tokens == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="streamcdp"`)
			writeError(w, http.StatusUnauthorized, CodeUnauthorized, "missing Authorization: Bearer <token>")
			return
		}
		client := h.o.Tokens.check(tok)
		if client == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="streamcdp", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, CodeUnauthorized, "the bearer token is not accepted")
			return
		}
		if c, ok := r.Context().Value(clientKey{}).(*string); ok {
			*c = client
		}
		next(w, r)
	})
}

// get allows GET and HEAD only.
func get(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed; this API is read-only (GET)")
			return
		}
		next(w, r)
	}
}

func timeout(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (h *handler) profile(w http.ResponseWriter, r *http.Request) {
	p, err := h.s.ByID(r.Context(), r.PathValue("profile_id"))
	h.reply(w, r, p, err)
}

func (h *handler) byIdentifier(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := h.s.ByIdentifier(r.Context(), q.Get("type"), q.Get("value"))
	h.reply(w, r, p, err)
}

func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := DefaultEventLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeInvalidArgument, fmt.Sprintf("limit %q is not a number", v))
			return
		}
		limit = n
	}
	p, err := h.s.Events(r.Context(), r.PathValue("profile_id"), q.Get("cursor"), limit)
	h.reply(w, r, p, err)
}

func (h *handler) ready(w http.ResponseWriter, r *http.Request) {
	var problems []string
	for _, f := range h.o.Ready {
		if err := f(r.Context()); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, strings.Join(problems, "; "))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// reply writes v, or the error's status and code.
func (h *handler) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	status, code, msg := classify(err)
	if status >= 500 {
		h.o.Logger.Error("request failed", zap.String("path", r.URL.Path), zap.Error(err))
	}
	if status == http.StatusServiceUnavailable {
		retryAfter(w)
	}
	writeError(w, status, code, msg)
}

// classify maps an error to its status, code and the message a client
// sees. Store failures are not described to clients beyond their kind.
func classify(err error) (int, string, string) {
	var ne net.Error
	switch {
	case errors.Is(err, ErrProfileNotFound):
		return http.StatusNotFound, CodeNotFound, err.Error()
	case errors.Is(err, ErrInvalidArgument):
		return http.StatusBadRequest, CodeInvalidArgument, err.Error()
	case errors.Is(err, ErrEventsUnavailable):
		return http.StatusNotImplemented, CodeEventsUnavailable, err.Error() + "; recent events need the warehouse"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &ne):
		return http.StatusServiceUnavailable, CodeUnavailable, "the profile stores did not answer in time; retry"
	}
	return http.StatusInternalServerError, CodeInternal, "internal error reading the profile (logged)"
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

// bufs are response buffers: a profile is encoded once, into a reused
// buffer, and written with one call.
var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func writeJSON(w http.ResponseWriter, status int, v any) {
	buf := bufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 { // a rare huge response is not kept
			buf.Reset()
			bufs.Put(buf)
		}
	}()
	buf.Reset()
	if err := json.NewEncoder(buf).Encode(v); err != nil { // Encode ends the text with a newline
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"code":"internal","message":"encoding the response failed"}}` + "\n")
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Header values, shared rather than allocated per response.
var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
	nosniff         = []string{"nosniff"}
)
