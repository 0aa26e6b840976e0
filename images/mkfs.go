// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// treeUsage is what a root tree occupies.
type treeUsage struct {
	Bytes int64 // allocated bytes, as du counts them
	Files int64 // inodes (hard links counted once)
}

// usage measures rootDir without leaving its filesystem.
func usage(rootDir string) (treeUsage, error) {
	var u treeUsage
	seen := map[uint64]bool{}
	err := walkTree(rootDir, func(_ string, _ fs.DirEntry, st *unix.Stat_t) error {
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		u.Bytes += st.Blocks * 512
		u.Files++
		return nil
	})
	if err != nil {
		return u, fmt.Errorf("measure tree: %w", err)
	}
	return u, nil
}

// walkTree calls fn with the lstat of every entry under rootDir that is on rootDir's
// filesystem; mount points below it are not part of the image and are skipped.
func walkTree(rootDir string, fn func(path string, d fs.DirEntry, st *unix.Stat_t) error) error {
	var rootStat unix.Stat_t
	if err := unix.Lstat(rootDir, &rootStat); err != nil {
		return err
	}
	return filepath.WalkDir(rootDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		if st.Dev != rootStat.Dev {
			return filepath.SkipDir
		}
		return fn(path, d, &st)
	})
}

// fsSize is the filesystem size for a tree: its content plus a tenth and 512 bytes per file for
// metadata, plus freeSpace, rounded up to 64 MiB. The 16 MiB journal is small on purpose: the
// image file is sparse, but the journal is written out in full.
func fsSize(u treeUsage) int64 {
	const round = 64 << 20
	size := u.Bytes + u.Bytes/10 + u.Files*512 + freeSpace
	return (size + round - 1) / round * round
}

// makeFS writes rootDir into a new ext4 filesystem in the file out (which must not exist).
func makeFS(ctx context.Context, rootDir, out, logPath string) (treeUsage, int64, error) {
	u, err := usage(rootDir)
	if err != nil {
		return u, 0, err
	}
	size := fsSize(u)
	err = run(ctx, logPath, buildEnv(), nil, "mke2fs", "-q", "-t", "ext4", "-d", rootDir, "-L", "root",
		"-m", "1", "-J", "size=16", "-E", "root_owner=0:0", out, strconv.FormatInt(size/1024, 10)+"k")
	if err != nil {
		return u, 0, err
	}
	return u, size, nil
}
