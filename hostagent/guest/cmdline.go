// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/crypto/ssh"
)

// BootParams are the guest's settings from the kernel command line.
type BootParams struct {
	// AuthorizedKey is the host's per-VM public key (waggle.key=, standard base64 of an
	// authorized_keys line). Required.
	AuthorizedKey ssh.PublicKey
	// Hostname (waggle.hostname=), "waggle" if not given.
	Hostname string
	// Debug (waggle.debug=1) turns on debug logging with per-stage timings.
	Debug bool
	// Address of eth0 (waggle.ip=, CIDR), default 192.168.127.2/24.
	Address netip.Prefix
	// Gateway is the default route (waggle.gw=), default 192.168.127.1.
	Gateway netip.Addr
	// DNS is the only nameserver in /etc/resolv.conf (waggle.dns=), default 192.168.127.1.
	DNS netip.Addr
	// Unknown lists waggle.* keys this guest does not understand (logged, not fatal).
	Unknown []string
}

// ParseCmdline parses a kernel command line (the contents of /proc/cmdline). Words are separated
// by white space; double quotes group white space into a word and are removed, as the kernel does.
// Only waggle.* parameters are interpreted, the last occurrence of a key wins, and parsing stops
// at "--" (what follows belongs to init's argv).
func ParseCmdline(cmdline string) (BootParams, error) {
	p := BootParams{
		Hostname: "waggle",
		Address:  netip.MustParsePrefix("192.168.127.2/24"),
		Gateway:  netip.MustParseAddr("192.168.127.1"),
		DNS:      netip.MustParseAddr("192.168.127.1"),
	}
	var key string
	for _, word := range splitCmdline(cmdline) {
		if word == "--" {
			break
		}
		name, value, hasValue := strings.Cut(word, "=")
		if !strings.HasPrefix(name, "waggle.") {
			continue
		}
		var err error
		switch name {
		case "waggle.key":
			key = value
		case "waggle.hostname":
			if err = checkHostname(value); err == nil {
				p.Hostname = value
			}
		case "waggle.debug":
			switch {
			case !hasValue || value == "1" || value == "true":
				p.Debug = true
			case value == "0" || value == "false":
				p.Debug = false
			default:
				err = fmt.Errorf("want 0 or 1, got %q", value)
			}
		case "waggle.ip":
			p.Address, err = netip.ParsePrefix(value)
			if err == nil && !p.Address.Addr().Is4() {
				err = errors.New("not an IPv4 prefix")
			}
		case "waggle.gw":
			p.Gateway, err = parseIPv4(value)
		case "waggle.dns":
			p.DNS, err = parseIPv4(value)
		default:
			p.Unknown = append(p.Unknown, name)
		}
		if err != nil {
			return BootParams{}, fmt.Errorf("kernel command line: %s: %w", name, err)
		}
	}
	if key == "" {
		return BootParams{}, errors.New("kernel command line: waggle.key is missing")
	}
	line, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return BootParams{}, fmt.Errorf("kernel command line: waggle.key: %w", err)
	}
	if p.AuthorizedKey, _, _, _, err = ssh.ParseAuthorizedKey(line); err != nil {
		return BootParams{}, fmt.Errorf("kernel command line: waggle.key: %w", err)
	}
	return p, nil
}

// splitCmdline splits a command line into words like the kernel's next_arg: white space outside
// double quotes separates words, and the quotes themselves are dropped.
func splitCmdline(s string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n' || r == '\r'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func parseIPv4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if !a.Is4() {
		return netip.Addr{}, errors.New("not an IPv4 address")
	}
	return a, nil
}

// checkHostname accepts RFC 1123 host names of at most 64 bytes (the kernel's limit).
func checkHostname(h string) error {
	if h == "" || len(h) > 64 {
		return fmt.Errorf("host name must have 1 to 64 bytes, got %d", len(h))
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("invalid host name %q", h)
		}
		for _, c := range []byte(label) {
			if !hostnameByte(c) {
				return fmt.Errorf("invalid host name %q", h)
			}
		}
	}
	return nil
}

// hostnameByte reports whether c may stand in a host name label: a letter, a digit or '-'.
func hostnameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}
