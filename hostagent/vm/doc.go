// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package vm is waggle's microVM layer on the host: a Manager that starts VMs from guest images,
// saves and restores them, and finds them again after a restart. Each VM runs under its own
// shim process (package shim) that owns QEMU (package qemu, behind the hypervisor.Backend
// interface) and the VM's network (package vnet).
//
// Launch reads as a pipeline of named stages: prepare (kernel, initramfs, acceleration),
// template (find or make the template snapshot of the image and size), directory, key, files,
// user (the unprivileged uid its QEMU runs as, package uids), shim, then restore (in the shim:
// disk, start, resume, identify) or boot (disk, boot).
// Machine.Snapshot saves a running VM (package snapshot), Manager.Restore starts one from a
// snapshot with a new identity: together they are pause, resume and fork.
package vm
