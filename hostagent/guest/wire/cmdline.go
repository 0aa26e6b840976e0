// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Kernel command line parameters the guest's init reads (see BootParams).
const (
	ParamKey      = "waggle.key"
	ParamHostname = "waggle.hostname"
	ParamDebug    = "waggle.debug"
	ParamIP       = "waggle.ip"
	ParamGateway  = "waggle.gw"
	ParamDNS      = "waggle.dns"
)

// paramPrefix starts every parameter of this contract.
const paramPrefix = "waggle."

// DefaultHostname is the guest's host name when the command line names none.
const DefaultHostname = "waggle"

// BootParams are the guest's settings from the kernel command line. The host writes them with
// Cmdline, the guest reads them with ParseCmdline.
type BootParams struct {
	// AuthorizedKey is the host's per-VM public key (waggle.key=, standard base64 of an
	// authorized_keys line). Required.
	AuthorizedKey ssh.PublicKey
	// Hostname (waggle.hostname=), "waggle" if not given.
	Hostname string
	// Debug (waggle.debug=1) turns on debug logging with per-stage timings.
	Debug bool
	// Address of eth0 (waggle.ip=, CIDR), default GuestIP/SubnetBits.
	Address netip.Prefix
	// Gateway is the default route (waggle.gw=), default GatewayIP.
	Gateway netip.Addr
	// DNS is the only nameserver in /etc/resolv.conf (waggle.dns=), default GatewayIP.
	DNS netip.Addr
	// Unknown lists waggle.* keys this guest does not understand (logged, not fatal).
	Unknown []string
}

// ParseCmdline parses a kernel command line (the contents of /proc/cmdline). Words are separated
// by white space; double quotes group white space into a word and are removed, as the kernel does.
// Only waggle.* parameters are interpreted, the last occurrence of a key wins, and parsing stops
// at "--" (what follows belongs to init's argv).
func ParseCmdline(cmdline string) (BootParams, error) {
	p := DefaultBootParams()
	var key string
	for _, word := range splitCmdline(cmdline) {
		if word == "--" {
			break
		}
		name, value, hasValue := strings.Cut(word, "=")
		if !strings.HasPrefix(name, paramPrefix) {
			continue
		}
		var err error
		switch name {
		case ParamKey:
			key = value
		case ParamHostname:
			if err = CheckHostname(value); err == nil {
				p.Hostname = value
			}
		case ParamDebug:
			switch {
			case !hasValue || value == "1" || value == "true":
				p.Debug = true
			case value == "0" || value == "false":
				p.Debug = false
			default:
				err = fmt.Errorf("want 0 or 1, got %q", value)
			}
		case ParamIP:
			p.Address, err = netip.ParsePrefix(value)
			if err == nil && !p.Address.Addr().Is4() {
				err = errors.New("not an IPv4 prefix")
			}
		case ParamGateway:
			p.Gateway, err = parseIPv4(value)
		case ParamDNS:
			p.DNS, err = parseIPv4(value)
		default:
			p.Unknown = append(p.Unknown, name)
		}
		if err != nil {
			return BootParams{}, fmt.Errorf("kernel command line: %s: %w", name, err)
		}
	}
	if key == "" {
		return BootParams{}, errors.New("kernel command line: " + ParamKey + " is missing")
	}
	line, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return BootParams{}, fmt.Errorf("kernel command line: %s: %w", ParamKey, err)
	}
	if p.AuthorizedKey, _, _, _, err = ssh.ParseAuthorizedKey(line); err != nil {
		return BootParams{}, fmt.Errorf("kernel command line: %s: %w", ParamKey, err)
	}
	return p, nil
}

// DefaultBootParams are the settings of a guest whose command line names only its key: the
// addresses of every VM's private network (network.go).
func DefaultBootParams() BootParams {
	return BootParams{
		Hostname: DefaultHostname,
		Address:  netip.PrefixFrom(netip.MustParseAddr(GuestIP), SubnetBits),
		Gateway:  netip.MustParseAddr(GatewayIP),
		DNS:      netip.MustParseAddr(GatewayIP),
	}
}

// Cmdline encodes p as kernel command line words for ParseCmdline; settings equal to the
// defaults are left out. It fails for what ParseCmdline would refuse.
func (p BootParams) Cmdline() (string, error) {
	if p.AuthorizedKey == nil {
		return "", errors.New("boot params: no authorized key")
	}
	if err := CheckHostname(p.Hostname); err != nil {
		return "", fmt.Errorf("boot params: %w", err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p.AuthorizedKey)))
	words := []string{ParamKey + "=" + base64.StdEncoding.EncodeToString([]byte(line)), ParamHostname + "=" + p.Hostname}
	def := DefaultBootParams()
	if p.Debug {
		words = append(words, ParamDebug+"=1")
	}
	for _, a := range []struct {
		name     string
		is4, def bool
		value    string
	}{
		{ParamIP, p.Address.Addr().Is4(), p.Address == def.Address, p.Address.String()},
		{ParamGateway, p.Gateway.Is4(), p.Gateway == def.Gateway, p.Gateway.String()},
		{ParamDNS, p.DNS.Is4(), p.DNS == def.DNS, p.DNS.String()},
	} {
		switch {
		case a.def:
		case !a.is4:
			return "", fmt.Errorf("boot params: %s: not IPv4: %s", a.name, a.value)
		default:
			words = append(words, a.name+"="+a.value)
		}
	}
	return strings.Join(words, " "), nil
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

// CheckHostname accepts RFC 1123 host names of at most 64 bytes (the kernel's limit).
func CheckHostname(h string) error {
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
