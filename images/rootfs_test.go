// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// writeTree creates files under dir: a name ending in "/" is a directory, "->" makes a symlink.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(name, "/"):
			err := os.MkdirAll(p, 0o755)
			if err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(content, "->"):
			if err := os.Symlink(strings.TrimPrefix(content, "->"), p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown to uid 1000, capabilities)")
	}
}

func TestFinish(t *testing.T) {
	requireRoot(t)
	outside := filepath.Join(t.TempDir(), "outside")
	writeTree(t, outside, map[string]string{"hosts": "host's file"})
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"etc/passwd":       "root:x:0:0:root:/root:/bin/bash\nnode:x:1000:1000::/home/node:/bin/sh",
		"etc/group":        "root:x:0:\n",
		"etc/shadow":       "root:*:20000:0:99999:7:::\n",
		"etc/skel/.bashrc": "# bashrc\n",
		"etc/resolv.conf":  "nameserver 10.0.0.1\n",
		"etc/hosts":        "->" + filepath.Join(outside, "hosts"),
		"bin/bash":         "",
		"usr/bin/su":       "",
		"usr/bin/wall":     "",
		"usr/bin/ping":     "",
		"tmp/":             "",
	})
	for f, mode := range map[string]os.FileMode{"usr/bin/su": os.ModeSetuid | 0o755, "usr/bin/wall": os.ModeSetgid | 0o755} {
		if err := os.Chmod(filepath.Join(root, f), mode); err != nil {
			t.Fatal(err)
		}
	}
	capable := setCapability(t, filepath.Join(root, "usr/bin/ping"))

	n, err := finish(root, identity{Name: "x", Hash: "h", Source: "test", Env: []string{"PATH=/opt/bin:/usr/bin", "A=b c"}})
	if err != nil {
		t.Fatal(err)
	}
	want := 2
	if capable {
		want = 3
	}
	if n != want {
		t.Errorf("stripped %d files, want %d", n, want)
	}
	for _, f := range []string{"usr/bin/su", "usr/bin/wall"} {
		fi, _ := os.Stat(filepath.Join(root, f))
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s mode %v after finish", f, fi.Mode())
		}
	}
	if sz, err := unix.Lgetxattr(filepath.Join(root, "usr/bin/ping"), "security.capability", nil); err == nil && sz > 0 {
		t.Error("ping keeps its file capability")
	}
	contains := map[string]string{
		"etc/passwd":              "sandbox:x:1000:1000:sandbox:/home/sandbox:/bin/bash\n",
		"etc/group":               "sandbox:x:1000:\n",
		"etc/shadow":              "\nsandbox:*:",
		"etc/hostname":            "sandbox\n",
		"etc/hosts":               "127.0.0.1\tlocalhost\n",
		"etc/environment":         "PATH=\"/opt/bin:/usr/bin\"\nA=\"b c\"\n",
		"etc/profile.d/waggle.sh": "export A='b c'\n",
		"etc/waggle-image":        "name=x\nhash=h\n",
		"home/sandbox/.bashrc":    "# bashrc\n",
	}
	for f, want := range contains {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s = %q (%v), want it to contain %q", f, b, err, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "hosts")); string(b) != "host's file" {
		t.Errorf("finish wrote through a symlink out of the root: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/resolv.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("resolv.conf kept: %v", err)
	}
	for path, want := range map[string]struct {
		mode     os.FileMode
		uid, gid uint32
	}{
		"tmp":                  {os.ModeDir | os.ModeSticky | 0o777, 0, 0},
		"var/tmp":              {os.ModeDir | os.ModeSticky | 0o777, 0, 0},
		"home/sandbox":         {os.ModeDir | 0o755, 1000, 1000},
		"home/sandbox/.bashrc": {0o644, 1000, 1000},
	} {
		fi, err := os.Lstat(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != want.mode || st.Uid != want.uid || st.Gid != want.gid {
			t.Errorf("%s: %v %d:%d, want %v %d:%d", path, fi.Mode(), st.Uid, st.Gid, want.mode, want.uid, want.gid)
		}
	}
	// finish is idempotent: a second run adds no second sandbox entry.
	if _, err := finish(root, identity{Name: "x", Env: []string{"PATH=/bin"}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/passwd")); strings.Count(string(b), "\nsandbox:") != 1 {
		t.Errorf("passwd after two runs:\n%s", b)
	}
}

// setCapability gives a file cap_net_raw, as Debian's ping has; false if the filesystem can't.
func setCapability(t *testing.T, path string) bool {
	t.Helper()
	// struct vfs_cap_data, revision 2: magic_etc, then permitted/inheritable for two words.
	data := make([]byte, 20)
	binary.LittleEndian.PutUint32(data[0:], 0x02000000|0x1) // VFS_CAP_REVISION_2 | effective
	binary.LittleEndian.PutUint32(data[4:], 1<<13)          // CAP_NET_RAW
	if err := unix.Lsetxattr(path, "security.capability", data, 0); err != nil {
		t.Logf("no file capabilities here: %v", err)
		return false
	}
	return true
}

func TestEnsureUserConflict(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"etc/passwd": "sandbox:x:1001:1001::/home/sandbox:/bin/sh\n"})
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := ensureUser(r); err == nil || !strings.Contains(err.Error(), "other ids") {
		t.Errorf("ensureUser with a sandbox of uid 1001: %v", err)
	}
}

func TestEnvFiles(t *testing.T) {
	tests := []struct {
		env     []string
		want    string
		wantErr bool
	}{
		{nil, "PATH=\"" + defaultPath + "\"\n", false},
		{[]string{"PATH=/x", "HOME=/h"}, "PATH=\"/x\"\nHOME=\"/h\"\n", false},
		{[]string{"A='q'"}, "PATH=\"" + defaultPath + "\"\nA=\"'q'\"\n", false},
		{[]string{"NOEQUALS"}, "", true},
		{[]string{"1A=x"}, "", true},
		{[]string{`A=say "hi"`}, "", true},
		{[]string{"A=x\nB=y"}, "", true},
	}
	for _, tt := range tests {
		got, err := envFiles(tt.env)
		if (err != nil) != tt.wantErr {
			t.Fatalf("envFiles(%q) error %v", tt.env, err)
		}
		if got.environment != tt.want {
			t.Errorf("envFiles(%q) = %q, want %q", tt.env, got.environment, tt.want)
		}
	}
	if got := safeEnv([]string{"A=1", `B="x"`, "C"}); strings.Join(got, ",") != "A=1" {
		t.Errorf("safeEnv = %q", got)
	}
}

func TestCleanDebian(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"var/cache/apt/pkgcache.bin":      "x",
		"var/cache/apt/archives/partial/": "",
		"var/lib/apt/lists/x_Packages":    "x",
		"usr/share/doc/bash/copyright":    "x",
		"var/log/apt/history.log":         "x",
		"var/lib/dpkg/status-old":         "x",
		"var/lib/dpkg/status":             "keep",
		"usr/share/zoneinfo/UTC":          "keep",
		"tmp/junk":                        "x",
	})
	if err := cleanDebian(root); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"var/cache/apt/pkgcache.bin", "var/lib/apt/lists/x_Packages", "usr/share/doc/bash/copyright",
		"var/log/apt/history.log", "var/lib/dpkg/status-old", "tmp/junk"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s kept", gone)
		}
	}
	for _, kept := range []string{"var/lib/dpkg/status", "usr/share/zoneinfo/UTC", "var/cache/apt/archives/partial", "var/log/apt"} {
		if _, err := os.Lstat(filepath.Join(root, kept)); err != nil {
			t.Errorf("%s removed: %v", kept, err)
		}
	}
}

func TestUnescapeMountPath(t *testing.T) {
	tests := map[string]string{
		`/a/b`:           "/a/b",
		`/with\040space`: "/with space",
		`/tab\011x`:      "/tab\tx",
		`/trail\04`:      `/trail\04`,
		`/back\134slash`: `/back\slash`,
	}
	for in, want := range tests {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzUnescapeMountPath(f *testing.F) {
	f.Add(`/a\040b`)
	f.Add(`\`)
	f.Add(`\777\0`)
	f.Fuzz(func(t *testing.T, s string) {
		got := unescapeMountPath(s)
		if len(got) > len(s) {
			t.Fatalf("unescape grew %q to %q", s, got)
		}
		if !strings.Contains(s, `\`) && got != s {
			t.Fatalf("unescape changed %q to %q", s, got)
		}
	})
}

func FuzzEnvFiles(f *testing.F) {
	f.Add("PATH=/bin")
	f.Add("A=b'c")
	f.Add("=x")
	f.Fuzz(func(t *testing.T, kv string) {
		got, err := envFiles([]string{kv})
		if err != nil {
			return
		}
		// Every accepted entry is one line in each file, after the default PATH if any.
		if n := strings.Count(got.environment, "\n"); n < 1 || n > 2 {
			t.Fatalf("envFiles(%q) environment %q", kv, got.environment)
		}
		if strings.Count(got.profile, "\n") != strings.Count(got.environment, "\n") {
			t.Fatalf("envFiles(%q) profile %q", kv, got.profile)
		}
	})
}
