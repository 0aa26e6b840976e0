// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func testKey(t testing.TB) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, base64.StdEncoding.EncodeToString(ssh.MarshalAuthorizedKey(k))
}

func TestParseCmdline(t *testing.T) {
	key, enc := testKey(t)
	base := "console=ttyS0 rdinit=/init panic=-1 quiet waggle.key=" + enc
	tests := []struct {
		name    string
		cmdline string
		check   func(t *testing.T, p BootParams)
		wantErr string
	}{
		{name: "defaults", cmdline: base, check: func(t *testing.T, p BootParams) {
			if p.Hostname != "waggle" || p.Debug || p.Address != netip.MustParsePrefix("192.168.127.2/24") ||
				p.Gateway != netip.MustParseAddr("192.168.127.1") || p.DNS != netip.MustParseAddr("192.168.127.1") {
				t.Fatalf("defaults: %+v", p)
			}
			if string(p.AuthorizedKey.Marshal()) != string(key.Marshal()) {
				t.Fatal("key differs")
			}
		}},
		{name: "all keys", cmdline: base + " waggle.hostname=env-1.example waggle.debug=1 waggle.ip=10.0.0.5/8 waggle.gw=10.0.0.1 waggle.dns=1.1.1.1 waggle.future=x",
			check: func(t *testing.T, p BootParams) {
				if p.Hostname != "env-1.example" || !p.Debug || p.Address.String() != "10.0.0.5/8" ||
					p.Gateway.String() != "10.0.0.1" || p.DNS.String() != "1.1.1.1" || !slices.Equal(p.Unknown, []string{"waggle.future"}) {
					t.Fatalf("got %+v", p)
				}
			}},
		{name: "bare debug flag, last wins", cmdline: base + " waggle.hostname=a waggle.debug waggle.hostname=b", check: func(t *testing.T, p BootParams) {
			if !p.Debug || p.Hostname != "b" {
				t.Fatalf("got %+v", p)
			}
		}},
		{name: "quotes and tabs", cmdline: "foo=\"a b\"\twaggle.hostname=\"q1\" \"waggle.key=" + enc + "\"", check: func(t *testing.T, p BootParams) {
			if p.Hostname != "q1" {
				t.Fatalf("got %+v", p)
			}
		}},
		{name: "after -- ignored", cmdline: base + " -- waggle.hostname=ignored", check: func(t *testing.T, p BootParams) {
			if p.Hostname != "waggle" {
				t.Fatalf("got %+v", p)
			}
		}},
		{name: "missing key", cmdline: "console=ttyS0 waggle.hostname=x", wantErr: "waggle.key is missing"},
		{name: "key after --", cmdline: "console=ttyS0 -- waggle.key=" + enc, wantErr: "waggle.key is missing"},
		{name: "bad base64", cmdline: "waggle.key=!!!", wantErr: "waggle.key"},
		{name: "not a key", cmdline: "waggle.key=" + base64.StdEncoding.EncodeToString([]byte("ssh-ed25519 AAAA")), wantErr: "waggle.key"},
		{name: "bad hostname", cmdline: base + " waggle.hostname=-bad", wantErr: "waggle.hostname"},
		{name: "long hostname", cmdline: base + " waggle.hostname=" + strings.Repeat("a", 65), wantErr: "waggle.hostname"},
		{name: "bad debug", cmdline: base + " waggle.debug=yes", wantErr: "waggle.debug"},
		{name: "ipv6 address", cmdline: base + " waggle.ip=fd00::2/64", wantErr: "waggle.ip"},
		{name: "bad gateway", cmdline: base + " waggle.gw=300.1.1.1", wantErr: "waggle.gw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseCmdline(tt.cmdline)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, p)
		})
	}
}

func TestSplitCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  a  b\n", []string{"a", "b"}},
		{`a="b c" d`, []string{"a=b c", "d"}},
		{`"x y"z`, []string{"x yz"}},
		{`""`, []string{""}},
		{`a "unterminated b`, []string{"a", "unterminated b"}},
	}
	for _, tt := range tests {
		if got := splitCmdline(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("splitCmdline(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	_, enc := testKey(f)
	f.Add("console=ttyS0 waggle.key=" + enc + " waggle.hostname=h waggle.debug=1")
	f.Add(`waggle.key="` + enc + `" waggle.ip=10.1.2.3/16 -- x`)
	f.Add(`"waggle.hostname=a b" waggle.gw=1.2.3.4 waggle.dns=`)
	f.Add("waggle.key=\x00\"\"\t")
	f.Fuzz(func(t *testing.T, cmdline string) {
		p, err := ParseCmdline(cmdline)
		if err != nil {
			return
		}
		if p.AuthorizedKey == nil {
			t.Fatal("no key but no error")
		}
		if CheckHostname(p.Hostname) != nil || !p.Address.Addr().Is4() || !p.Gateway.Is4() || !p.DNS.Is4() {
			t.Fatalf("invalid params accepted: %+v", p)
		}
		for _, w := range splitCmdline(cmdline) {
			if strings.Contains(w, `"`) {
				t.Fatalf("word %q kept a quote", w)
			}
		}
		line, err := p.Cmdline()
		if err != nil {
			t.Fatalf("Cmdline of accepted params: %v", err)
		}
		again, err := ParseCmdline(line)
		if err != nil || again.Hostname != p.Hostname || again.Address != p.Address || again.Debug != p.Debug {
			t.Fatalf("%q does not round-trip: %+v %v", line, again, err)
		}
	})
}

func TestCmdlineRoundTrip(t *testing.T) {
	key, _ := testKey(t)
	def := DefaultBootParams()
	def.AuthorizedKey = key
	custom := def
	custom.Hostname, custom.Debug = "env-1", true
	custom.Address, custom.Gateway, custom.DNS = netip.MustParsePrefix("10.0.0.5/8"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("1.1.1.1")
	for _, p := range []BootParams{def, custom} {
		line, err := p.Cmdline()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseCmdline("console=ttyS0 quiet " + line)
		if err != nil {
			t.Fatalf("ParseCmdline(%q): %v", line, err)
		}
		if got.Hostname != p.Hostname || got.Debug != p.Debug || got.Address != p.Address || got.Gateway != p.Gateway ||
			got.DNS != p.DNS || string(got.AuthorizedKey.Marshal()) != string(key.Marshal()) {
			t.Errorf("round trip of %q: %+v, want %+v", line, got, p)
		}
	}
	if line, _ := def.Cmdline(); strings.Contains(line, ParamIP) || strings.Contains(line, ParamDebug) {
		t.Errorf("defaults spelled out: %q", line)
	}
	bad := []BootParams{{}, {AuthorizedKey: key, Hostname: "-x"}, {AuthorizedKey: key, Hostname: "h", Address: netip.MustParsePrefix("fd00::1/64")}}
	for _, p := range bad {
		if line, err := p.Cmdline(); err == nil {
			t.Errorf("Cmdline(%+v) = %q, want an error", p, line)
		}
	}
}
