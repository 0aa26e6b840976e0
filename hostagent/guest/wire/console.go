// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Console markers. The guest prints each on a line of its own on /dev/console (ttyS0).
const (
	// ReadyMarker is printed once the SSH server accepts connections.
	ReadyMarker = "WAGGLE-READY"
	// HostKeyMarker precedes the guest's ephemeral SSH host key in authorized_keys format, so the
	// host can pin it; it is printed before ReadyMarker.
	HostKeyMarker = "WAGGLE-HOSTKEY"
	// FailedMarker starts the line printed when a boot stage fails (`WAGGLE-FAILED stage=... err=...`);
	// the guest powers off right after it.
	FailedMarker = "WAGGLE-FAILED"
)

// ConsoleKind says what a console line announces.
type ConsoleKind int

// Kinds of console lines.
const (
	ConsoleOther   ConsoleKind = iota // anything else (kernel and init logs)
	ConsoleReady                      // ReadyMarker
	ConsoleHostKey                    // HostKeyLine; ConsoleLine.HostKey is set
	ConsoleFailed                     // FailedLine; ConsoleLine.Text is the whole line
)

// ConsoleLine is one parsed console line.
type ConsoleLine struct {
	Kind    ConsoleKind
	HostKey ssh.PublicKey
	Text    string
}

// ParseConsoleLine classifies one line of the guest's console. Leading and trailing white
// space (such as a CR from the serial console) is ignored. A host-key line whose key does not
// parse is ConsoleOther: the guest prints only valid keys.
func ParseConsoleLine(line string) ConsoleLine {
	line = strings.TrimSpace(line)
	switch {
	case line == ReadyMarker:
		return ConsoleLine{Kind: ConsoleReady, Text: line}
	case strings.HasPrefix(line, FailedMarker+" "):
		return ConsoleLine{Kind: ConsoleFailed, Text: line}
	}
	if rest, ok := strings.CutPrefix(line, HostKeyMarker+" "); ok {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(rest)); err == nil {
			return ConsoleLine{Kind: ConsoleHostKey, HostKey: k, Text: line}
		}
	}
	return ConsoleLine{Kind: ConsoleOther, Text: line}
}

// HostKeyLine is the console line announcing the host key k.
func HostKeyLine(k ssh.PublicKey) string {
	return HostKeyMarker + " " + MarshalKey(k)
}

// FailedLine is the console line announcing that boot stage failed with err.
func FailedLine(stage string, err error) string {
	return fmt.Sprintf("%s stage=%s err=%q", FailedMarker, stage, err.Error())
}

// MarshalKey is k as one authorized_keys line without the newline, the form every key takes
// in this contract.
func MarshalKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}
