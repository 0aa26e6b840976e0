// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package kernel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/waggle-dev/waggle/internal/fsutil"
)

// payload is one compression format a bzImage may carry, with the tool that decompresses it
// from stdin and ignores what follows the first stream.
type payload struct {
	name  string
	magic []byte
	tool  []string
}

func payloads() []payload {
	return []payload{
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, []string{"xz", "-dc", "--single-stream"}},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}, []string{"zstd", "-dcq"}},
		{"gzip", []byte{0x1f, 0x8b, 0x08}, []string{"gzip", "-dcq"}},
	}
}

var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// PayloadOffsets returns, in file order, the offsets in a bzImage where a compressed payload of
// a known format may start, with the format's index in payloads().
func PayloadOffsets(image []byte) []Candidate {
	var cands []Candidate
	for i, p := range payloads() {
		for off := 0; ; {
			j := bytes.Index(image[off:], p.magic)
			if j < 0 {
				break
			}
			cands = append(cands, Candidate{Offset: off + j, Format: p.name, format: i})
			off += j + 1
		}
	}
	// Insertion sort: there are only a handful of candidates.
	for i := 1; i < len(cands); i++ {
		for j := i; j > 0 && cands[j].Offset < cands[j-1].Offset; j-- {
			cands[j], cands[j-1] = cands[j-1], cands[j]
		}
	}
	return cands
}

// Candidate is a possible start of the compressed kernel inside a bzImage.
type Candidate struct {
	Offset int
	Format string
	format int
}

// ExtractVmlinux writes the uncompressed ELF kernel inside the bzImage vmlinuz to dst. It tries
// each compressed-payload candidate in order until one decompresses to an ELF file.
func ExtractVmlinux(ctx context.Context, vmlinuz, dst string) error {
	image, err := os.ReadFile(vmlinuz)
	if err != nil {
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	var tried []string
	for _, c := range PayloadOffsets(image) {
		p := payloads()[c.format]
		cmd := exec.CommandContext(ctx, p.tool[0], p.tool[1:]...)
		cmd.Stdin = bytes.NewReader(image[c.Offset:])
		out, err := cmd.Output()
		if len(out) > len(elfMagic) && bytes.Equal(out[:len(elfMagic)], elfMagic) {
			// Trailing data after the stream may make the tool complain; the ELF is complete.
			return fsutil.WriteFileAtomic(dst, out, 0o644)
		}
		tried = append(tried, fmt.Sprintf("%s@%d: %v", c.Format, c.Offset, err))
	}
	return fmt.Errorf("extract vmlinux from %s: %w (tried %s)", vmlinuz, ErrNoPayload, strings.Join(tried, "; "))
}
