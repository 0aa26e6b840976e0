// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/images"
)

func TestImagesCLI(t *testing.T) {
	dataDir := t.TempDir()
	tests := []struct {
		args    []string
		want    string // in the output, or in the error when wantErr
		wantErr bool
	}{
		{[]string{"images", "ls", "--data-dir", dataDir}, "python", false},
		{[]string{"images", "build", "--data-dir", dataDir, "ruby"}, `unknown image "ruby"`, true},
		{[]string{"images", "import", "--data-dir", dataDir, "example.com/x:1"}, `"name" not set`, true},
		{[]string{"images", "import", "--data-dir", dataDir, "--name", "node", "example.com/x:1"}, "built-in image name", true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:2], " "), func(t *testing.T) {
			out, err := waggle(t, tt.args...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("waggle %v: error %v\n%s", tt.args, err, out)
			}
			got := out
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("waggle %v = %q, want it to contain %q", tt.args, got, tt.want)
			}
		})
	}
	out, _ := waggle(t, "images", "ls", "--data-dir", dataDir)
	if n := strings.Count(out, "not built"); n != len(images.Names()) {
		t.Errorf("ls of an empty cache lists %d images as not built, want %d:\n%s", n, len(images.Names()), out)
	}
}
