// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/waggle-dev/waggle/internal/fsutil"
	"github.com/waggle-dev/waggle/internal/progress"
)

// ErrUnsafePath is returned (wrapped) when an image layer names a path outside the image root.
var ErrUnsafePath = errors.New("path escapes the image root")

// ImportConfig says where imported images go and how registries are reached.
type ImportConfig struct {
	// CacheDir holds the images, as for Build.
	CacheDir string
	// Progress receives one line per stage; nil discards them.
	Progress *progress.Reporter
	// Platform picks the image from a multi-platform index; nil means linux/amd64.
	Platform *v1.Platform
	// Remote are extra options for registry access (transport, auth). By default the Docker
	// credential keychain is used.
	Remote []remote.Option
}

// Import flattens an OCI image into a cached image called name and returns it. ref is either
// the path of a local OCI image layout directory or a registry reference (host/repo:tag or
// @digest). Layers are applied in order with whiteouts; entries that would land outside the root
// are refused; the sandbox user is added if missing. The image's environment (config Env)
// becomes /etc/environment. An import of the same digest under the same name is cached.
func Import(ctx context.Context, cfg ImportConfig, ref, name string) (_ Image, err error) {
	if err := checkName(name); err != nil {
		return Image{}, err
	}
	if _, ok := Lookup(name); ok {
		return Image{}, fmt.Errorf("images: import: %q is a built-in image name; choose another --name", name)
	}
	if cfg.CacheDir == "" {
		return Image{}, errors.New("images: import: no cache directory")
	}
	if err := preflight("importing", "mke2fs"); err != nil {
		return Image{}, err
	}
	if cfg.Platform == nil {
		cfg.Platform = &v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	p := cfg.Progress
	start := time.Now()
	var img v1.Image
	var source string
	if err := stage(p, name, "resolve", ref, func() (string, error) {
		var err error
		img, source, err = resolveOCI(ctx, cfg, ref)
		return source, err
	}); err != nil {
		return Image{}, err
	}
	hash := digest(struct {
		Builder   string `json:"builder"`
		FreeSpace int64  `json:"free_space"`
		Source    string `json:"source"`
	}{builderVersion, freeSpace, source[strings.LastIndexByte(source, '@')+1:]})

	if err := os.MkdirAll(filepath.Join(imageDir(cfg.CacheDir), "tmp"), 0o755); err != nil {
		return Image{}, fmt.Errorf("images: import: %w", err)
	}
	unlock, err := fsutil.Lock(ctx, filepath.Join(imageDir(cfg.CacheDir), name+".lock"), func() {
		p.Printf(name, "waiting for another build of this image")
	})
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	if cached, err := readImage(cfg.CacheDir, name, hash); err == nil {
		p.Printf(name, "up to date: %s", cached.Path)
		return cached, nil
	}
	work, err := newWorkDir(cfg.CacheDir, "image-"+name+"+")
	if err != nil {
		return Image{}, err
	}
	defer dropWorkDir(p, name, work, &err)
	root := filepath.Join(work, "root")

	if err := stage(p, name, "flatten", "", func() (string, error) {
		layers, err := img.Layers()
		if err != nil {
			return "", err
		}
		rc := mutate.Extract(img)
		defer rc.Close()
		st, err := untar(ctx, rc, root)
		return fmt.Sprintf("%d layers, %d entries, %d special files skipped", len(layers), st.entries, st.skipped), err
	}); err != nil {
		return Image{}, err
	}
	var env []string
	if cf, err := img.ConfigFile(); err == nil {
		env = safeEnv(cf.Config.Env)
	}
	if err := stage(p, name, "finish", "", func() (string, error) {
		n, err := finish(root, identity{Name: name, Hash: hash, Source: source, Env: env})
		return fmt.Sprintf("privileges stripped from %d files", n), err
	}); err != nil {
		return Image{}, err
	}
	if err := mkfsAndPublish(ctx, cfg.CacheDir, p, work, metadata{Name: name, Hash: hash, Source: source, Builder: builderVersion}, start); err != nil {
		return Image{}, err
	}
	return readImage(cfg.CacheDir, name, hash)
}

// resolveOCI finds the image ref names and returns it with "ref@digest".
func resolveOCI(ctx context.Context, cfg ImportConfig, ref string) (v1.Image, string, error) {
	if _, err := os.Stat(filepath.Join(ref, "oci-layout")); err == nil {
		idx, err := layout.ImageIndexFromPath(ref)
		if err != nil {
			return nil, "", fmt.Errorf("OCI layout %s: %w", ref, err)
		}
		img, err := pickImage(idx, *cfg.Platform)
		if err != nil {
			return nil, "", fmt.Errorf("OCI layout %s: %w", ref, err)
		}
		d, err := img.Digest()
		if err != nil {
			return nil, "", err
		}
		abs, _ := filepath.Abs(ref)
		return img, "oci-layout:" + abs + "@" + d.String(), nil
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, "", fmt.Errorf("%q is neither an OCI layout directory nor an image reference: %w", ref, err)
	}
	opts := append([]remote.Option{
		remote.WithContext(ctx),
		remote.WithPlatform(*cfg.Platform),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
	}, cfg.Remote...)
	img, err := remote.Image(r, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, "", err
	}
	return img, r.Context().Name() + "@" + d.String(), nil
}

// pickImage returns the image of an index for platform (descending into nested indexes), or its
// only image.
func pickImage(idx v1.ImageIndex, platform v1.Platform) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var only v1.Image
	count := 0
	for _, desc := range m.Manifests {
		switch {
		case desc.MediaType.IsIndex():
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return nil, err
			}
			if img, err := pickImage(child, platform); err == nil {
				return img, nil
			}
		case desc.MediaType.IsImage():
			img, err := idx.Image(desc.Digest)
			if err != nil {
				return nil, err
			}
			if desc.Platform != nil && desc.Platform.Satisfies(platform) {
				return img, nil
			}
			only, count = img, count+1
		}
	}
	if count == 1 {
		return only, nil
	}
	return nil, fmt.Errorf("no image for %s among %d manifests", platform.String(), len(m.Manifests))
}

// safeEnv keeps the entries of an image's Env that /etc/environment can carry.
func safeEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if _, err := envFiles([]string{kv}); err == nil {
			out = append(out, kv)
		}
	}
	return out
}

type untarStats struct{ entries, skipped int }

// untar writes a flattened image tar into rootDir (created). Every path is resolved inside the
// root: names with "..", and writes through symlinks that leave the root, are refused. Device
// nodes and fifos are skipped (the guest has devtmpfs). Hard links are made last, since a
// flattened tar may name a link before its target.
func untar(ctx context.Context, r io.Reader, rootDir string) (untarStats, error) {
	var st untarStats
	if err := os.Mkdir(rootDir, 0o755); err != nil {
		return st, err
	}
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return st, err
	}
	defer root.Close()
	type hardlink struct{ name, target string }
	var links []hardlink
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// The flattener writes the end-of-archive marker before it reports a failure
			// (an unsafe path, a bad layer digest): only reading to the end shows it.
			if _, err := io.Copy(io.Discard, r); err != nil {
				return st, fmt.Errorf("read layers: %w", err)
			}
			break
		}
		if err != nil {
			return st, fmt.Errorf("read layers: %w", err)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return st, err
		}
		st.entries++
		if name == "." {
			continue
		}
		if isSparse(hdr) {
			// A few header bytes can describe terabytes of holes; container images never
			// need them.
			return st, fmt.Errorf("%s: sparse files are not supported", name)
		}
		if hdr.Typeflag != tar.TypeDir {
			if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
				return st, fmt.Errorf("%s: %w", name, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(name, 0o755)
		case tar.TypeReg:
			err = writeEntry(root, name, tr)
		case tar.TypeSymlink:
			if err = mergeIntoLink(root, name, hdr.Linkname); err == nil {
				err = root.Symlink(hdr.Linkname, name)
			}
		case tar.TypeLink:
			target, lerr := entryName(hdr.Linkname)
			if lerr != nil {
				return st, lerr
			}
			links = append(links, hardlink{name, target})
			continue
		default:
			st.skipped++
			continue
		}
		if errors.Is(err, fs.ErrExist) {
			continue // a higher layer's file, moved here by mergeIntoLink, wins
		}
		if err != nil {
			return st, fmt.Errorf("%s: %w", name, err)
		}
		if err := setOwner(root, name, hdr); err != nil {
			return st, err
		}
	}
	for _, l := range links {
		if err := root.Link(l.target, l.name); err != nil && !errors.Is(err, fs.ErrExist) {
			return st, fmt.Errorf("hard link %s -> %s: %w", l.name, l.target, err)
		}
	}
	return st, nil
}

// mergeIntoLink handles a lower layer's symlink that arrives where a higher layer already wrote
// files below the same path (the flattened tar lists higher layers first). In the container those
// files were written through the link, so they move into the link's target (resolved inside the
// root), replacing what the link's own layer put there, and the directory makes way for the
// link. (Without layer boundaries in the flattened tar, a file that an even higher layer wrote
// at the target path directly loses to the one written through the link.)
func mergeIntoLink(root *os.Root, name, link string) error {
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.IsDir()) {
		return nil
	}
	if err != nil {
		return err
	}
	target := link
	if !path.IsAbs(link) {
		target = path.Join(path.Dir(name), link)
	}
	if target, err = entryName(target); err != nil {
		return err
	}
	if target == "." || target == name || strings.HasPrefix(target, name+"/") || strings.HasPrefix(name, target+"/") {
		return fmt.Errorf("symlink %s -> %s replaces a directory with a link into itself", name, link)
	}
	if err := root.MkdirAll(target, 0o755); err != nil {
		return err
	}
	return moveInto(root, name, target)
}

// moveInto moves the entries of directory from into directory to, merging subdirectories and
// replacing other entries, then removes from.
func moveInto(root *os.Root, from, to string) error {
	entries, err := fs.ReadDir(root.FS(), from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		src, dst := from+"/"+e.Name(), to+"/"+e.Name()
		dfi, err := root.Lstat(dst)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			err = root.Rename(src, dst)
		case err != nil:
		case e.IsDir() && dfi.IsDir():
			err = moveInto(root, src, dst)
		default:
			if err = root.RemoveAll(dst); err == nil {
				err = root.Rename(src, dst)
			}
		}
		if err != nil {
			return err
		}
	}
	return root.Remove(from)
}

// isSparse reports whether a tar entry is a GNU sparse file (old or PAX format).
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// entryName cleans a tar entry name into a path relative to the root, refusing escapes.
func entryName(n string) (string, error) {
	if strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("%w: %q", ErrUnsafePath, n)
	}
	c := path.Clean(strings.TrimLeft(n, "/"))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: %q", ErrUnsafePath, n)
	}
	return c, nil
}

func writeEntry(root *os.Root, name string, r io.Reader) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// setOwner applies an entry's owner and mode (setuid bits included; finish strips them later).
func setOwner(root *os.Root, name string, hdr *tar.Header) error {
	if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if hdr.Typeflag == tar.TypeSymlink {
		return nil
	}
	mode := hdr.FileInfo().Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
	if err := root.Chmod(name, mode); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
