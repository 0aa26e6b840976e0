// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy_test

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy"
)

// BenchmarkFile fetches a 4 MiB wheel through the proxy (as a guest does, over the shim's
// unix socket), from a local upstream every time (upstream: each iteration a new project) or
// from the cache (cached: the same file again).
func BenchmarkFile(b *testing.B) {
	data := bytes.Repeat([]byte("waggle-package-"), (4<<20)/15)
	digest := sha(data)
	upstream := serveHTTP(b, func(w http.ResponseWriter, r *http.Request) {
		if name, ok := strings.CutPrefix(r.URL.Path, "/simple/"); ok {
			name = strings.Trim(name, "/")
			fmt.Fprintf(w, `<a href="/files/%s-1.0-py3-none-any.whl#sha256=%s">x</a>`, name, digest)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data)
	})
	cfg := pkgproxy.DefaultConfig()
	cfg.PyPIIndex = "http://" + upstream + "/simple"
	cfg.CacheSize = 1 << 30
	tp := startProxy(b, cfg)
	link := regexp.MustCompile(`/pypi/files/[0-9a-f]{16}/[a-z0-9]+-1.0-py3-none-any.whl`)
	client := tp.client("vm1")
	get := func(path string) []byte {
		resp, err := client.Get("http://" + wire.PackageProxyHost + path)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return buf.Bytes()
	}
	file := func(project string) string { return string(link.Find(get(wire.PyPIPath + project + "/"))) }
	b.Run("upstream", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := range b.N {
			if len(get(file(fmt.Sprintf("u%d", i)))) != len(data) {
				b.Fatal("short file")
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		path := file("cached")
		get(path)
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		for range b.N {
			if len(get(path)) != len(data) {
				b.Fatal("short file")
			}
		}
	})
}
