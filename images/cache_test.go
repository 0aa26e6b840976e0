// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeImage publishes a placeholder image file with metadata, as a build would.
func fakeImage(t *testing.T, cacheDir, name, hash string, built time.Time) Image {
	t.Helper()
	work := t.TempDir()
	ext4 := filepath.Join(work, "image.ext4")
	if err := os.WriteFile(ext4, []byte("not really ext4"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(imageDir(cacheDir), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := publish(cacheDir, ext4, metadata{Name: name, Hash: hash, Size: 15, Built: built, Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestFindNotBuilt(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, want string
	}{
		{"python", "run `waggle images build python` (or `go tool task images`)"},
		{"mine", "waggle images import REF --name mine"},
	}
	for _, tt := range tests {
		_, err := Find(dir, tt.name)
		if !errors.Is(err, ErrNotBuilt) {
			t.Fatalf("Find(%q) error %v, want ErrNotBuilt", tt.name, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Find(%q) error %q does not say %q", tt.name, err, tt.want)
		}
	}
	if _, err := Find(dir, "../etc"); err == nil || errors.Is(err, ErrNotBuilt) {
		t.Errorf("Find with a bad name: %v", err)
	}
}

func TestCache(t *testing.T) {
	dir := t.TempDir()
	py, _ := Lookup("python")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	// A stale build of python is listed, but Find wants the current definition.
	fakeImage(t, dir, "python", "00000000deadbeef", t0)
	if _, err := Find(dir, "python"); !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), "out of date") {
		t.Fatalf("Find(python) with a stale image: %v", err)
	}
	cur := fakeImage(t, dir, "python", py.Hash(), t0.Add(time.Hour))
	got, err := Find(dir, "python")
	if err != nil {
		t.Fatal(err)
	}
	if got != cur || got.Size != 15 || !got.Built.Equal(t0.Add(time.Hour)) {
		t.Errorf("Find(python) = %+v, want %+v", got, cur)
	}
	if fi, err := os.Stat(got.Path); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("image file %v mode, err %v: want read-only", fi.Mode(), err)
	}

	// Imported images: the newest wins; a name that is a prefix of another stays apart.
	fakeImage(t, dir, "my-img", "1111111111111111", t0)
	newest := fakeImage(t, dir, "my-img", "2222222222222222", t0.Add(2*time.Hour))
	fakeImage(t, dir, "my", "3333333333333333", t0.Add(3*time.Hour))
	if got, err := Find(dir, "my-img"); err != nil || got != newest {
		t.Errorf("Find(my-img) = %+v, %v; want %+v", got, err, newest)
	}

	// Half an image (a crash between the two renames) is invisible.
	if err := os.WriteFile(imagePath(dir, "half", "4444444444444444"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(metaPath(dir, "gone", "5555555555555555"), []byte(`{"name":"gone","hash":"5555555555555555"}`), 0o644); err != nil {
		t.Fatal(err)
	}

	list, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, img := range list {
		names = append(names, img.Name+"-"+img.Hash)
	}
	want := "my-3333333333333333 my-img-2222222222222222 my-img-1111111111111111 python-" + py.Hash() + " python-00000000deadbeef"
	if strings.Join(names, " ") != want {
		t.Errorf("List = %v\nwant %s", names, want)
	}

	gone, err := Prune(dir)
	if err != nil {
		t.Fatal(err)
	}
	var pruned []string
	for _, img := range gone {
		pruned = append(pruned, img.Name+"-"+img.Hash)
		if _, err := os.Stat(img.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", img.Path, err)
		}
	}
	if got := strings.Join(pruned, " "); got != "my-img-1111111111111111 python-00000000deadbeef" {
		t.Errorf("Prune deleted %s", got)
	}
	if _, err := Find(dir, "python"); err != nil {
		t.Errorf("Find(python) after Prune: %v", err)
	}
}
