package localstack

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// journal makes an in-memory schema registry durable: each successful
// mutating request is appended (and fsynced) to a file before the response
// is sent, and replayed in order on start. Replaying the same requests in the
// same order yields the same schema ids, because ids are assigned in order.
type journal struct {
	next http.Handler
	mu   sync.Mutex // orders mutations so the journal order is the id order
	f    *os.File
}

type journalEntry struct {
	Method string `json:"m"`
	Path   string `json:"p"`
	Query  string `json:"q,omitempty"`
	Body   string `json:"b,omitempty"`
}

func openJournal(dir string, next http.Handler) (*journal, int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, fmt.Errorf("creating registry dir: %w", err)
	}
	path := filepath.Join(dir, "journal.jsonl")
	n, err := replay(path, next)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, 0, fmt.Errorf("opening registry journal: %w", err)
	}
	return &journal{next: next, f: f}, n, nil
}

func replay(path string, h http.Handler) (int, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("opening registry journal: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	n := 0
	for sc.Scan() {
		var e journalEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// A torn last line from a crash mid-write: the request was never
			// acknowledged, so dropping it is correct.
			break
		}
		req := httptest.NewRequest(e.Method, e.Path, strings.NewReader(e.Body))
		req.URL.RawQuery = e.Query
		req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code/100 != 2 {
			return n, fmt.Errorf("replaying registry journal %s entry %d (%s %s): %d %s", path, n+1, e.Method, e.Path, rec.Code, rec.Body.String())
		}
		n++
	}
	return n, sc.Err()
}

// mutating reports whether a request changes registry state. Lookups that
// use POST (schema lookup under a subject, compatibility checks) are not.
func mutating(r *http.Request) bool {
	switch r.Method {
	case http.MethodPut, http.MethodDelete:
		return true
	case http.MethodPost:
		return !strings.HasPrefix(r.URL.Path, "/compatibility/") && strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/versions")
	}
	return false
}

func (j *journal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !mutating(r) {
		j.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	j.mu.Lock()
	defer j.mu.Unlock()
	rec := httptest.NewRecorder()
	j.next.ServeHTTP(rec, r)
	if rec.Code/100 == 2 {
		line, _ := json.Marshal(journalEntry{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(body)})
		_, err := j.f.Write(append(line, '\n'))
		if err == nil {
			err = j.f.Sync()
		}
		if err != nil {
			http.Error(w, "persisting registry change: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func (j *journal) Close() error { return j.f.Close() }
