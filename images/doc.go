// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package images builds and caches the read-only ext4 root filesystems that guests boot from:
// the built-in Debian images (base, python, node, shell) made with debootstrap, and images
// flattened from OCI references.
//
// An image is userland only (no kernel, init system or sshd: the guest's /init provides those).
// Every image has the user sandbox (uid and gid 1000, home /home/sandbox), /etc/hostname,
// /etc/hosts, a world-writable sticky /tmp, and no setuid, setgid or file-capability binaries.
//
// The environment every guest command should get is written to /etc/environment as KEY="VALUE"
// lines (for the guest init to load) and to /etc/profile.d/waggle.sh (for login shells). The
// python image puts /opt/venv/bin (a venv owned by sandbox) first on PATH, with VIRTUAL_ENV; the
// guest init also does that by itself whenever /opt/venv exists. The node image sets
// NPM_CONFIG_PREFIX=/home/sandbox/.npm-global (also as prefix in /etc/npmrc, so it holds without
// the environment) with its bin on PATH, so `pip install` and `npm install -g` work as sandbox.
// The package managers are pointed at the host's package proxy (see hostagent/guest/wire):
// pip by /etc/pip.conf, npm by /etc/npmrc and apt, in every built-in image, by
// /etc/apt/sources.list. No image needs the host's CA: the proxy speaks plain HTTP to guests.
//
// Built images live in <cacheDir>/images as <name>-<hash>.ext4 (read-only, sparse) beside
// <name>-<hash>.json (metadata, written last: an image without it does not exist). The hash
// covers the definition and the builder version, so an image is rebuilt only when its definition
// changes. Built-in images start from one shared debootstrap tree, cached in
// <cacheDir>/images/bootstrap, onto which each image's packages are installed with apt-get in a
// chroot; builds happen in <cacheDir>/images/tmp and a per-image lock file serializes builders.
package images
