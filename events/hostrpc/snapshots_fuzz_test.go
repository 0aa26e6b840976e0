// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostrpc

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadTar: whatever a stored snapshot object holds, readTar writes only regular files
// directly in its directory, at most max bytes of them, or fails.
func FuzzReadTar(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []tar.Header{
		{Typeflag: tar.TypeReg, Name: "memory", Size: 3},
		{Typeflag: tar.TypeReg, Name: "../x", Size: 0},
		{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/etc"},
	} {
		_ = tw.WriteHeader(&h)
		if h.Size > 0 {
			_, _ = tw.Write([]byte("abc"))
		}
	}
	_ = tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte("not a tar stream"))
	const max = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := filepath.Join(t.TempDir(), "d")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		n, err := readTar(bytes.NewReader(data), dir, max)
		if err != nil {
			return
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, e := range entries {
			info, err := os.Lstat(filepath.Join(dir, e.Name()))
			if err != nil || !info.Mode().IsRegular() {
				t.Fatalf("%s: %v %v, want a regular file", e.Name(), info, err)
			}
			total += info.Size()
		}
		if total != n || n > max {
			t.Fatalf("read %d bytes, files hold %d (max %d)", n, total, max)
		}
		if left, _ := os.ReadDir(filepath.Dir(dir)); len(left) != 1 {
			t.Fatalf("outside the directory: %v", left)
		}
	})
}
