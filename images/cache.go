// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ErrNotBuilt is returned (wrapped) by Find when the image is not in the cache.
var ErrNotBuilt = errors.New("image not built")

// Image is a built image in the cache.
type Image struct {
	Name string
	// Path is the read-only ext4 file; use it as the backing file of a per-VM overlay.
	Path string
	// Hash is the cache key: the definition hash, or for an imported image a hash of its digest.
	Hash string
	// Size is the filesystem size in bytes (the file is sparse: less is allocated).
	Size int64
	// Built is when the image was built.
	Built time.Time
	// Source says where it came from: "debootstrap bookworm" or the OCI reference and digest.
	Source string
}

// metadata is the JSON written beside each image; its presence marks the image as complete.
type metadata struct {
	Name         string    `json:"name"`
	Hash         string    `json:"hash"`
	Source       string    `json:"source"`
	Packages     []string  `json:"packages,omitempty"`
	Size         int64     `json:"size"`
	ContentBytes int64     `json:"content_bytes"`
	Files        int64     `json:"files"`
	Built        time.Time `json:"built"`
	BuildSeconds float64   `json:"build_seconds"`
	Builder      string    `json:"builder"`
}

// imageDir is where images live inside a cache directory.
func imageDir(cacheDir string) string { return filepath.Join(cacheDir, "images") }

func imagePath(cacheDir, name, hash string) string {
	return filepath.Join(imageDir(cacheDir), name+"-"+hash+".ext4")
}

func metaPath(cacheDir, name, hash string) string {
	return filepath.Join(imageDir(cacheDir), name+"-"+hash+".json")
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// checkName refuses names that are not safe as file name parts.
func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid image name %q: use 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", name)
	}
	return nil
}

// Find returns the cached image called name. For a built-in image it must match the current
// definition; for an imported one the newest import wins. The error wraps ErrNotBuilt and tells
// the operator what to run when the image is missing.
func Find(cacheDir, name string) (Image, error) {
	if err := checkName(name); err != nil {
		return Image{}, err
	}
	if def, ok := Lookup(name); ok {
		hash := def.Hash()
		img, err := readImage(cacheDir, name, hash)
		if err == nil {
			return img, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return Image{}, err
		}
		what := "is not built"
		if others, _ := List(cacheDir); slices.ContainsFunc(others, func(i Image) bool { return i.Name == name }) {
			what = "is out of date (its definition changed)"
		}
		return Image{}, fmt.Errorf("%w: image %q %s in %s; run `waggle images build %s` (or `go tool task images`)",
			ErrNotBuilt, name, what, imageDir(cacheDir), name)
	}
	all, err := List(cacheDir)
	if err != nil {
		return Image{}, err
	}
	var found []Image
	for _, img := range all {
		if img.Name == name {
			found = append(found, img)
		}
	}
	if len(found) == 0 {
		return Image{}, fmt.Errorf("%w: no image %q in %s; built-in images are %s (run `waggle images build NAME`), others come from `waggle images import REF --name %s`",
			ErrNotBuilt, name, imageDir(cacheDir), strings.Join(Names(), ", "), name)
	}
	return slices.MaxFunc(found, func(a, b Image) int { return a.Built.Compare(b.Built) }), nil
}

// List returns every complete image in the cache, sorted by name and then newest first.
func List(cacheDir string) ([]Image, error) {
	metas, err := filepath.Glob(filepath.Join(imageDir(cacheDir), "*.json"))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Image
	for _, p := range metas {
		base := strings.TrimSuffix(filepath.Base(p), ".json")
		i := strings.LastIndexByte(base, '-')
		if i <= 0 {
			continue
		}
		img, err := readImage(cacheDir, base[:i], base[i+1:])
		if errors.Is(err, fs.ErrNotExist) {
			continue // an image being written, or a crash left half of one
		}
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	slices.SortFunc(out, func(a, b Image) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return b.Built.Compare(a.Built)
	})
	return out, nil
}

// readImage loads one image's metadata and checks that its ext4 file is there. A missing part
// gives an error that wraps fs.ErrNotExist.
func readImage(cacheDir, name, hash string) (Image, error) {
	b, err := os.ReadFile(metaPath(cacheDir, name, hash))
	if err != nil {
		return Image{}, fmt.Errorf("read image metadata: %w", err)
	}
	var m metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return Image{}, fmt.Errorf("image metadata %s: %w", metaPath(cacheDir, name, hash), err)
	}
	if m.Name != name || m.Hash != hash {
		return Image{}, fmt.Errorf("image metadata %s: names %s-%s: %w", metaPath(cacheDir, name, hash), m.Name, m.Hash, fs.ErrNotExist)
	}
	path := imagePath(cacheDir, name, hash)
	if _, err := os.Stat(path); err != nil {
		return Image{}, fmt.Errorf("image file: %w", err)
	}
	return Image{Name: name, Path: path, Hash: hash, Size: m.Size, Built: m.Built, Source: m.Source}, nil
}

// publish moves a finished ext4 file into the cache and then writes its metadata, so that an
// image is visible only once both are in place.
func publish(cacheDir, ext4 string, m metadata) (Image, error) {
	if err := os.Chmod(ext4, 0o444); err != nil {
		return Image{}, fmt.Errorf("publish: %w", err)
	}
	if err := syncFile(ext4); err != nil {
		return Image{}, fmt.Errorf("publish: %w", err)
	}
	if err := os.Rename(ext4, imagePath(cacheDir, m.Name, m.Hash)); err != nil {
		return Image{}, fmt.Errorf("publish: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Image{}, fmt.Errorf("publish: %w", err)
	}
	tmp := ext4 + ".json"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return Image{}, fmt.Errorf("publish: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return Image{}, fmt.Errorf("publish: %w", err)
	}
	if err := os.Rename(tmp, metaPath(cacheDir, m.Name, m.Hash)); err != nil {
		return Image{}, fmt.Errorf("publish: %w", err)
	}
	if err := syncFile(imageDir(cacheDir)); err != nil {
		return Image{}, fmt.Errorf("publish: %w", err)
	}
	return readImage(cacheDir, m.Name, m.Hash)
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Prune deletes the images no Find can return any more: built-in images of an older definition
// and imported images that a newer import of the same name replaced. It returns what it deleted.
// A VM still running from a deleted image keeps its open file, but cannot be restarted.
func Prune(cacheDir string) ([]Image, error) {
	all, err := List(cacheDir)
	if err != nil {
		return nil, err
	}
	newest := map[string]bool{} // imported names seen; List puts the newest first
	var gone []Image
	for _, img := range all {
		keep := !newest[img.Name]
		if def, ok := Lookup(img.Name); ok {
			keep = def.Hash() == img.Hash
		}
		newest[img.Name] = true
		if keep {
			continue
		}
		// Metadata first, so a half-deleted image is never visible.
		if err := os.Remove(metaPath(cacheDir, img.Name, img.Hash)); err != nil {
			return gone, fmt.Errorf("prune %s: %w", img.Path, err)
		}
		if err := os.Remove(img.Path); err != nil {
			return gone, fmt.Errorf("prune %s: %w", img.Path, err)
		}
		gone = append(gone, img)
	}
	return gone, nil
}
