package profileapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamcdp/streamcdp/processors/identity"
)

// blockingIdentities holds every profile read until release is closed,
// telling entered when one starts.
type blockingIdentities struct {
	fakeIdentities
	entered chan string
	release chan struct{}
}

func (b blockingIdentities) QueueProfile(ctx context.Context, pipe redis.Pipeliner, id string) func() (string, []identity.Identifier, error) {
	read := b.fakeIdentities.QueueProfile(ctx, pipe, id)
	return func() (string, []identity.Identifier, error) {
		b.entered <- id
		<-b.release
		return read()
	}
}

// TestOverloadIsRefusedAtOnce: with MaxInFlight requests being served, the
// next /v1 request gets 503 overloaded with Retry-After at once (the
// served ones are still blocked when it answers), health checks still
// answer, and once a slot frees requests are served again. Every exchange
// conforms to the OpenAPI document.
func TestOverloadIsRefusedAtOnce(t *testing.T) {
	const limit = 2
	conf := newConformance(t)
	ids := blockingIdentities{entered: make(chan string, limit), release: make(chan struct{})}
	unused := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = unused.Close() })
	s := NewService(Stores{Redis: unused, Identities: ids, Features: fakeFeatures{}, Segments: fakeSegments{}, Recommendations: fakeRecs{},
		IdentifierTypes: []string{"email"}})
	tokens, err := ParseTokens(goodToken, "")
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(s, Options{Tokens: tokens, MaxInFlight: limit})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+goodToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if err := conf.check(req, resp.StatusCode, resp.Header, body, false); err != nil {
			t.Error(err)
		}
		return resp, body
	}

	// Fill every slot with a request that blocks in the identity read.
	var wg sync.WaitGroup
	codes := make(chan int, limit)
	for range limit {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := get("/v1/profiles/p1")
			codes <- resp.StatusCode
		}()
	}
	for range limit {
		<-ids.entered
	}

	resp, body := get("/v1/profiles/p1")
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || e.Error.Code != CodeOverloaded || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("request over the limit: %d Retry-After %q %s, want 503 overloaded with Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp, body := get("/v1/profiles/by-identifier?type=email&value=ann@example.com"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("by-identifier over the limit: %d %s", resp.StatusCode, body)
	}
	if resp, body := get("/v1/profiles/p1/events"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("events over the limit: %d %s", resp.StatusCode, body)
	}
	if resp, body := get("/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz while overloaded: %d %s", resp.StatusCode, body)
	}

	// The blocked requests finish; the slots are free again.
	close(ids.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("a request admitted before the overload answered %d", c)
		}
	}
	for range limit + 1 { // more than the limit, one after the other
		go func() { <-ids.entered }()
		if resp, body := get("/v1/profiles/p1"); resp.StatusCode != http.StatusOK {
			t.Fatalf("after the overload: %d %s", resp.StatusCode, body)
		}
	}
}
