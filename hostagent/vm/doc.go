// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package vm is waggle's microVM layer on the host: a Manager that boots VMs from guest images
// and finds them again after a restart. Each VM runs under its own shim process (package shim)
// that owns QEMU (package qemu, behind the hypervisor.Backend interface) and the VM's network
// (package vnet). Launch reads as a pipeline of named stages: prepare (kernel, initramfs,
// acceleration), directory, key, disk, user (the unprivileged uid its QEMU runs as, package
// uids), shim, boot.
package vm
