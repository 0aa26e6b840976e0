// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgtest

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackages checks the built packages with Debian's own tools where this host has them:
// dpkg-deb reads the .deb, gpgv verifies the InRelease with the exported key.
func TestPackages(t *testing.T) {
	u := Start(t, Options{Sign: true})
	dir := t.TempDir()
	deb := filepath.Join(dir, DebFile)
	if err := os.WriteFile(deb, u.Deb, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("dpkg-deb"); err == nil {
		out, err := exec.Command("dpkg-deb", "--field", deb, "Package", "Version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Package: "+Name) || !strings.Contains(string(out), "Version: "+Version) {
			t.Errorf("dpkg-deb --field: %v\n%s", err, out)
		}
		out, err = exec.Command("dpkg-deb", "--contents", deb).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "./usr/bin/"+Name) {
			t.Errorf("dpkg-deb --contents: %v\n%s", err, out)
		}
	}
	if _, err := exec.LookPath("gpgv"); err == nil {
		keyring := filepath.Join(dir, "key.gpg")
		dearmor := exec.Command("gpg", "--batch", "--homedir", dir, "--dearmor", "--yes", "--output", keyring)
		dearmor.Stdin = strings.NewReader(string(u.AptKeys))
		if len(u.AptKeys) == 0 {
			t.Fatal("no key")
		}
		if out, err := dearmor.CombinedOutput(); err != nil {
			t.Fatalf("gpg --dearmor: %v\n%s", err, out)
		}
		resp, err := http.Get(u.Apt + "/dists/" + Suite + "/InRelease")
		if err != nil {
			t.Fatal(err)
		}
		inRelease, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		v := exec.Command("gpgv", "--keyring", keyring)
		v.Stdin = strings.NewReader(string(inRelease))
		if out, err := v.CombinedOutput(); err != nil {
			t.Errorf("gpgv InRelease: %v\n%s", err, out)
		}
	}
	if _, err := exec.LookPath("python3"); err == nil {
		whl := filepath.Join(dir, WheelFile)
		if err := os.WriteFile(whl, u.Wheel, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("python3", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import waggle_hello; print(waggle_hello.greet())", whl).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != Greeting {
			t.Errorf("import from the wheel: %v\n%s", err, out)
		}
	}
}
