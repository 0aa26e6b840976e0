// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package shim is the per-VM supervisor process (as containerd's shims are per container): it
// owns one VM's hypervisor process and its virtual network, survives the process that started
// it, and answers on unix sockets in the VM's directory: control.sock (a line-based JSON
// protocol: status, wait, stop) and ssh.sock (a byte stream to the guest's SSH port).
//
// The host side (Launch, Open, Client) starts a shim, finds one again after a restart and talks
// to it. The shim side (Run) is what `waggle vm shim --dir DIR` executes.
package shim
