// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package aptname is the grammar of the Debian package specs install_packages takes, shared by
// the router and host agent (hostrpc's package rules) and the guest, which checks them again
// before it runs apt as root.
package aptname

import "regexp"

// Pattern is a Debian package name (Debian Policy 5.6.1: lower-case letters, digits, '+', '-',
// '.'; at least two characters, starting with a letter or digit), optionally for an
// architecture (:ARCH) and pinned to a version (=VERSION of digits, letters, '.', '+', '~',
// '-', ':'). It admits no option (nothing starts with '-'), path, whitespace or shell character.
var Pattern = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?(=[A-Za-z0-9][A-Za-z0-9.+~:-]*)?$`)

// MaxLen bounds one spec.
const MaxLen = 128

// Valid reports whether s is a Debian package spec of at most MaxLen bytes.
func Valid(s string) bool { return len(s) <= MaxLen && Pattern.MatchString(s) }
