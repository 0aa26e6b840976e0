// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/internal/testtls"
)

// slowFrontend reads the whole body, then holds the call for the duration in the query's
// "hold" and answers with the body's size, or 400 naming why it could not read the body; a
// call whose context ended answers 503.
func slowFrontend(*Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		hold, _ := time.ParseDuration(req.URL.Query().Get("hold"))
		select {
		case <-time.After(hold):
		case <-req.Context().Done():
			http.Error(w, "canceled", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "read %d bytes", len(body))
	})
}

// serveRouter runs a router with cfg (no auth) and slowFrontend until the test ends and
// returns its address.
func serveRouter(t *testing.T, cfg Config) string {
	t.Helper()
	n := eventstest.Start(t)
	cfg.NoAuth, cfg.Listen = true, "127.0.0.1:0"
	r, err := New(cfg, Deps{NC: n.NC, Log: n.Log, View: emptyView{}, MCP: slowFrontend})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	addr, err := r.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return addr.String()
}

// TestCallOutlivesHTTPTimeouts: a tool call that takes longer than the read and write timeouts
// is neither canceled nor cut, since those bound reading the request and answering plain
// endpoints, not the call.
func TestCallOutlivesHTTPTimeouts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadTimeout, cfg.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	addr := serveRouter(t, cfg)
	resp, err := http.Post("http://"+addr+"/mcp?hold=1.5s", "application/json", strings.NewReader(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != "read 7 bytes" {
		t.Fatalf("long call: %d %q, %v", resp.StatusCode, body, err)
	}
}

// rawRequest sends head (and then body) on a new connection and returns what the server
// answered before it closed the connection or wait passed.
func rawRequest(t *testing.T, addr, head, body string, wait time.Duration) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := io.WriteString(conn, head+body); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server still holds the connection after %s; it answered %q", wait, got)
	}
	return string(got)
}

// TestStalledRequestBody: a client that stops sending its body is cut off after the read
// timeout instead of holding the call open.
func TestStalledRequestBody(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadTimeout = 300 * time.Millisecond
	addr := serveRouter(t, cfg)
	got := rawRequest(t, addr, "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n", `{"x":`, 10*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 400") || !strings.Contains(got, "timeout") {
		t.Fatalf("stalled body: %q", got)
	}
}

// TestIdleConnectionClosed: a keep-alive connection without requests is closed after the idle
// timeout.
func TestIdleConnectionClosed(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	addr := serveRouter(t, cfg)
	got := rawRequest(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "", 10*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 200") || !strings.HasSuffix(got, "ok\n") {
		t.Fatalf("healthz, then idle: %q", got)
	}
}

// TestRequestBodyLimit: a body of MaxRequestBytes passes, one byte more is refused with 413
// naming the limit (at once when the length is declared, at the limit when it is chunked).
func TestRequestBodyLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limits.MaxFileBytes, cfg.Limits.MaxCodeBytes = 64<<10, 1000
	limit := cfg.MaxRequestBytes()
	addr := serveRouter(t, cfg)
	post := func(body io.Reader) (int, string) {
		t.Helper()
		resp, err := http.Post("http://"+addr+"/mcp", "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, msg := post(strings.NewReader(strings.Repeat("x", int(limit)))); code != http.StatusOK {
		t.Fatalf("body at the limit: %d %q", code, msg)
	}
	code, msg := post(strings.NewReader(strings.Repeat("x", int(limit)+1)))
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, fmt.Sprintf("over this router's limit of %d bytes", limit)) ||
		!strings.Contains(msg, "a file of up to 65536 bytes fits when sent with encoding base64") {
		t.Fatalf("declared body over the limit: %d %q", code, msg)
	}
	// No Content-Length: the body is cut at the limit.
	if code, msg := post(io.MultiReader(strings.NewReader(strings.Repeat("x", int(limit))), strings.NewReader("y"))); code != http.StatusBadRequest ||
		!strings.Contains(msg, "request body too large") {
		t.Fatalf("chunked body over the limit: %d %q", code, msg)
	}
}

// TestMaxRequestBytes checks that the body limit admits a write_file of the largest file as
// base64 and as text whose escaping doubles it, and an execute of the largest code with every
// byte escaped, each with the longest path.
func TestMaxRequestBytes(t *testing.T) {
	for _, files := range []int{1, 64 << 10, 1 << 20} { // the limit is linear in MaxFileBytes
		cfg := DefaultConfig()
		cfg.Limits.MaxFileBytes = files
		l := cfg.Limits
		path := "/" + strings.Repeat("\x01", l.MaxPathBytes-1) // escaped as \u0001
		for name, args := range map[string]map[string]any{
			"base64": {"environment_id": "01jx", "path": path, "encoding": "base64",
				"content": base64.StdEncoding.EncodeToString(make([]byte, files))},
			"escaped text": {"environment_id": "01jx", "path": path, "content": strings.Repeat("\n", files)},
			"escaped code": {"environment_id": "01jx", "code": strings.Repeat("\x01", l.MaxCodeBytes)},
		} {
			body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
				"params": map[string]any{"name": "write_file", "arguments": args}})
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(body)) > cfg.MaxRequestBytes() {
				t.Errorf("max file %d, %s: a %d-byte request is over the %d-byte limit", files, name, len(body), cfg.MaxRequestBytes())
			}
		}
	}
}

// TestCallTimeout: the write deadline of a tool call covers the longest wait of each tool.
func TestCallTimeout(t *testing.T) {
	cfg := DefaultConfig()
	got := cfg.CallTimeout()
	for name, wait := range map[string]time.Duration{
		"execute":      cfg.Limits.Exec.Max + cfg.RPCMargin,
		"install":      cfg.Limits.Install.Max + cfg.RPCMargin,
		"wait_process": cfg.Limits.ProcessWait.Max + cfg.FileRPCTimeout,
		"create":       time.Duration(cfg.PlaceAttempts) * cfg.BootTimeout,
	} {
		if got < wait+callSlack {
			t.Errorf("call timeout %s is shorter than %s's %s", got, name, wait)
		}
	}
	cfg.Limits.Exec.Max = time.Hour
	if cfg.CallTimeout() < time.Hour {
		t.Errorf("call timeout %s does not follow the exec limit", cfg.CallTimeout())
	}
}

// TestBeginCall: a tenant is admitted up to MaxCallsPerTenant calls at once, others are not
// affected, and ending a call (once or twice) frees its slot.
func TestBeginCall(t *testing.T) {
	r := &Router{calls: tenantCalls{max: 2, n: map[string]int{}}}
	acme, globex := Principal{Tenant: "acme", KeyID: "k"}, Principal{Tenant: "globex", KeyID: "k"}
	end1, err1 := r.BeginCall(acme)
	_, err2 := r.BeginCall(acme)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	_, err := r.BeginCall(acme)
	if ue, ok := AsUserError(err); !ok || ue.Kind != KindBusy || !strings.Contains(ue.Msg, "tenant acme is busy: it has 2 calls in progress") {
		t.Fatalf("third call: %v", err)
	}
	if _, err := r.BeginCall(globex); err != nil {
		t.Fatalf("other tenant: %v", err)
	}
	end1()
	end1()
	if _, err := r.BeginCall(acme); err != nil {
		t.Fatalf("after one ended: %v", err)
	}
	if _, err := r.BeginCall(acme); err == nil {
		t.Fatal("a call ended twice freed two slots")
	}
	unlimited := &Router{calls: tenantCalls{n: map[string]int{}}}
	for range 100 {
		if _, err := unlimited.BeginCall(acme); err != nil {
			t.Fatal(err)
		}
	}
}

// TestServesHTTPS: with a certificate the router serves HTTPS only; a client that trusts its
// CA gets through, plain HTTP does not.
func TestServesHTTPS(t *testing.T) {
	files := testtls.New(t)
	cfg := DefaultConfig()
	cfg.TLSCert, cfg.TLSKey = files.Cert, files.Key
	addr := serveRouter(t, cfg)
	pem, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz over HTTPS: %s", resp.Status)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP was served")
		}
	}
	bad := DefaultConfig()
	bad.TLSCert = files.Cert
	if err := bad.Validate(); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}
