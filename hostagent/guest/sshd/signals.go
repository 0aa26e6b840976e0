// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

//go:build linux

package sshd

import "syscall"

// signalByName maps an SSH signal name (RFC 4254 §6.10, without "SIG") to a Linux signal.
func signalByName(name string) (syscall.Signal, bool) {
	for _, s := range knownSignals() {
		if s.name == name {
			return s.sig, true
		}
	}
	return 0, false
}

// signalName is the SSH name of sig.
func signalName(sig syscall.Signal) (string, bool) {
	for _, s := range knownSignals() {
		if s.sig == sig {
			return s.name, true
		}
	}
	return "", false
}

type namedSignal struct {
	name string
	sig  syscall.Signal
}

func knownSignals() []namedSignal {
	return []namedSignal{
		{"ABRT", syscall.SIGABRT}, {"ALRM", syscall.SIGALRM}, {"FPE", syscall.SIGFPE},
		{"HUP", syscall.SIGHUP}, {"ILL", syscall.SIGILL}, {"INT", syscall.SIGINT},
		{"KILL", syscall.SIGKILL}, {"PIPE", syscall.SIGPIPE}, {"QUIT", syscall.SIGQUIT},
		{"SEGV", syscall.SIGSEGV}, {"TERM", syscall.SIGTERM}, {"USR1", syscall.SIGUSR1},
		{"USR2", syscall.SIGUSR2}, {"CONT", syscall.SIGCONT}, {"STOP", syscall.SIGSTOP},
	}
}
