// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The guest user every image has; the guest init runs commands as this user.
const (
	sandboxUser = "sandbox"
	sandboxUID  = 1000
	sandboxHome = "home/sandbox"
	hostname    = "sandbox"
)

// dpkgExcludes keeps documentation and translations out of packages installed on top of the
// bootstrap (finish removes what debootstrap itself unpacked).
const dpkgExcludes = `path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
`

// debianJunk lists what cleanDebian empties: package caches and lists, docs, logs, backups.
const debianJunk = `var/cache/apt var/lib/apt/lists usr/share/doc usr/share/man usr/share/info
usr/share/locale usr/share/lintian var/log var/cache/debconf/*-old var/lib/dpkg/*-old tmp var/tmp root`

// identity is what finish writes into every image so the guest can tell what it runs.
type identity struct {
	Name, Hash, Source string
	Env                []string
}

// finish gives a root tree what every image has: the sandbox user and home, hostname, hosts,
// environment, a sticky /tmp, no resolv.conf (the guest init writes it) and no setuid, setgid or
// file-capability binaries. It confines every write to the tree, so a hostile image's symlinks
// cannot redirect it. It returns how many files lost privileges.
func finish(rootDir string, id identity) (stripped int, err error) {
	r, err := os.OpenRoot(rootDir)
	if err != nil {
		return 0, fmt.Errorf("finish: %w", err)
	}
	defer r.Close()
	if err := ensureUser(r); err != nil {
		return 0, err
	}
	env, err := envFiles(id.Env)
	if err != nil {
		return 0, err
	}
	files := map[string]string{
		"etc/hostname":            hostname + "\n",
		"etc/hosts":               "127.0.0.1\tlocalhost\n127.0.1.1\t" + hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"etc/environment":         env.environment,
		"etc/profile.d/waggle.sh": env.profile,
		"etc/waggle-image":        fmt.Sprintf("name=%s\nhash=%s\nsource=%s\n", id.Name, id.Hash, id.Source),
	}
	for name, content := range files {
		if err := replaceFile(r, name, content, 0o644); err != nil {
			return 0, fmt.Errorf("finish: %w", err)
		}
	}
	if err := removeIfExists(r, "etc/resolv.conf"); err != nil {
		return 0, fmt.Errorf("finish: %w", err)
	}
	for _, dir := range []string{"tmp", "var/tmp"} {
		if err := r.MkdirAll(dir, 0o755); err != nil {
			return 0, fmt.Errorf("finish: %w", err)
		}
		if err := r.Lchown(dir, 0, 0); err != nil {
			return 0, fmt.Errorf("finish: %w", err)
		}
		if err := r.Chmod(dir, os.ModeSticky|0o777); err != nil {
			return 0, fmt.Errorf("finish: %w", err)
		}
	}
	return harden(rootDir)
}

// replaceFile writes a regular file inside r, replacing whatever was at name (a symlink is
// removed, never followed).
func replaceFile(r *os.Root, name, content string, perm os.FileMode) error {
	if err := r.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	if err := removeIfExists(r, name); err != nil {
		return err
	}
	return r.WriteFile(name, []byte(content), perm)
}

func removeIfExists(r *os.Root, name string) error {
	if _, err := r.Lstat(name); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return r.RemoveAll(name)
}

// ensureUser adds the sandbox user and group (uid and gid 1000) if missing and gives it a home.
// Another account may already use uid 1000 (node images have one); sandbox then shares it.
func ensureUser(r *os.Root) error {
	shell := "/bin/sh"
	if _, err := r.Lstat("bin/bash"); err == nil {
		shell = "/bin/bash"
	}
	days := time.Now().Unix() / 86400
	entries := []struct {
		file, line string
		always     bool // create the file if missing
	}{
		{"etc/passwd", fmt.Sprintf("%s:x:%d:%d:%s:/%s:%s", sandboxUser, sandboxUID, sandboxUID, sandboxUser, sandboxHome, shell), true},
		{"etc/group", fmt.Sprintf("%s:x:%d:", sandboxUser, sandboxUID), true},
		{"etc/shadow", fmt.Sprintf("%s:*:%d:0:99999:7:::", sandboxUser, days), false},
		{"etc/gshadow", sandboxUser + ":!::", false},
	}
	for _, e := range entries {
		if err := addEntry(r, e.file, e.line, e.always); err != nil {
			return fmt.Errorf("add user %s: %w", sandboxUser, err)
		}
	}
	if err := r.MkdirAll(sandboxHome, 0o755); err != nil {
		return fmt.Errorf("home: %w", err)
	}
	if err := copySkel(r); err != nil {
		return fmt.Errorf("home: %w", err)
	}
	if err := r.Chmod(sandboxHome, 0o755); err != nil {
		return fmt.Errorf("home: %w", err)
	}
	return r.Lchown(sandboxHome, sandboxUID, sandboxUID)
}

// addEntry appends line to a colon-separated account file unless an entry with the same name
// exists; an existing entry must have the same id fields.
func addEntry(r *os.Root, file, line string, create bool) error {
	b, err := r.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !create:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		b = nil
		if file == "etc/passwd" {
			b = []byte("root:x:0:0:root:/root:/bin/sh\n")
		}
		if file == "etc/group" {
			b = []byte("root:x:0:\n")
		}
	case err != nil:
		return err
	}
	want := strings.Split(line, ":")
	for l := range strings.Lines(string(b)) {
		f := strings.Split(strings.TrimRight(l, "\n"), ":")
		if f[0] != want[0] {
			continue
		}
		if file == "etc/passwd" && (len(f) < 4 || f[2] != want[2] || f[3] != want[3]) {
			return fmt.Errorf("%s has user %s with other ids: %q", file, f[0], strings.TrimSpace(l))
		}
		if file == "etc/group" && (len(f) < 3 || f[2] != want[2]) {
			return fmt.Errorf("%s has group %s with another id: %q", file, f[0], strings.TrimSpace(l))
		}
		return nil
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	b = append(b, line+"\n"...)
	perm := os.FileMode(0o644)
	if strings.Contains(file, "shadow") {
		perm = 0o640
	}
	if fi, err := r.Lstat(file); err == nil {
		perm = fi.Mode().Perm()
	}
	return replaceFile(r, file, string(b), perm)
}

// copySkel copies the regular files at the top of /etc/skel into the sandbox home, owned by it.
func copySkel(r *os.Root) error {
	entries, err := fs.ReadDir(r.FS(), "etc/skel")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		dst := sandboxHome + "/" + e.Name()
		if _, err := r.Lstat(dst); err == nil {
			continue
		}
		b, err := r.ReadFile("etc/skel/" + e.Name())
		if err != nil {
			return err
		}
		if err := r.WriteFile(dst, b, 0o644); err != nil {
			return err
		}
		if err := r.Lchown(dst, sandboxUID, sandboxUID); err != nil {
			return err
		}
	}
	return nil
}

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envText holds an image's environment in the two formats the guest reads.
type envText struct{ environment, profile string }

// envFiles renders KEY=VALUE pairs as /etc/environment (KEY="VALUE") and as a profile.d script.
// PATH defaults to the standard one.
func envFiles(env []string) (envText, error) {
	var t envText
	hasPath := false
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !envKeyRE.MatchString(k) || strings.ContainsAny(v, "\"\\\n\x00") {
			return envText{}, fmt.Errorf("environment entry %q: want KEY=VALUE without quotes, backslashes or newlines", kv)
		}
		hasPath = hasPath || k == "PATH"
		t.environment += k + "=\"" + v + "\"\n"
		t.profile += fmt.Sprintf("export %s='%s'\n", k, strings.ReplaceAll(v, "'", `'\''`))
	}
	if !hasPath {
		t.environment = "PATH=\"" + defaultPath + "\"\n" + t.environment
		t.profile = "export PATH='" + defaultPath + "'\n" + t.profile
	}
	return t, nil
}

// harden removes setuid and setgid bits and file capabilities from every file under rootDir
// (staying on its filesystem), so the sandbox user has no way to become root. It returns the
// number of files changed.
func harden(rootDir string) (int, error) {
	n := 0
	err := walkTree(rootDir, func(path string, d fs.DirEntry, st *unix.Stat_t) error {
		if !d.Type().IsRegular() {
			return nil
		}
		changed := false
		if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			if err := unix.Fchmodat(unix.AT_FDCWD, path, st.Mode&0o777, 0); err != nil {
				return err
			}
			changed = true
		}
		if sz, err := unix.Lgetxattr(path, "security.capability", nil); err == nil && sz > 0 {
			if err := unix.Lremovexattr(path, "security.capability"); err != nil {
				return err
			}
			changed = true
		}
		if changed {
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("harden: %w", err)
	}
	return n, nil
}

// cleanDebian empties the package caches, lists, docs and logs a Debian build leaves behind.
func cleanDebian(rootDir string) error {
	r, err := os.OpenRoot(rootDir)
	if err != nil {
		return fmt.Errorf("clean: %w", err)
	}
	defer r.Close()
	for _, pattern := range strings.Fields(debianJunk) {
		if strings.Contains(pattern, "*") {
			matches, err := fs.Glob(r.FS(), pattern)
			if err != nil {
				return fmt.Errorf("clean %s: %w", pattern, err)
			}
			for _, m := range matches {
				if err := r.RemoveAll(m); err != nil {
					return fmt.Errorf("clean %s: %w", m, err)
				}
			}
			continue
		}
		if err := emptyDir(r, pattern); err != nil {
			return fmt.Errorf("clean %s: %w", pattern, err)
		}
	}
	return nil
}

// emptyDir removes everything in dir except subdirectories, which it empties the same way (apt
// and dpkg expect their directories to exist).
func emptyDir(r *os.Root, dir string) error {
	entries, err := fs.ReadDir(r.FS(), dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := dir + "/" + e.Name()
		if e.IsDir() {
			if err := emptyDir(r, p); err != nil {
				return err
			}
			continue
		}
		if err := r.Remove(p); err != nil {
			return err
		}
	}
	return nil
}
