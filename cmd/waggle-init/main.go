// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Command waggle-init is PID 1 of every waggle guest (see package hostagent/guest). Build it
// static: CGO_ENABLED=0 go build ./cmd/waggle-init. The initramfs must hold it as /init with mode
// 0755, because the guest also runs it as the sandbox user: `waggle-init sftp-server` is the
// SFTP server process of the SSH server's "sftp" subsystem. `waggle-init apt-install -- NAME...`
// is the package installer the SSH server runs as root for the host's apt install requests.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/waggle-dev/waggle/hostagent/guest"
	"github.com/waggle-dev/waggle/hostagent/guest/sshd"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "sftp-server" {
		wd, err := os.Getwd()
		if err == nil {
			err = sshd.ServeSFTP(os.Stdin, os.Stdout, wd)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "waggle-init sftp-server:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) >= 3 && os.Args[1] == "apt-install" && os.Args[2] == "--" {
		os.Exit(guest.AptInstall(guest.DefaultAptConfig(), os.Stdin, os.Stdout, os.Stderr, os.Args[3:]))
	}
	if os.Getpid() != 1 || len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: waggle-init (as PID 1 of a guest) | waggle-init sftp-server | waggle-init apt-install -- NAME...")
		os.Exit(2)
	}
	err := guest.Run(context.Background(), guest.DefaultConfig())
	// Only reached if powering off failed; PID 1 must not exit.
	fmt.Fprintln(os.Stderr, "waggle-init:", err)
	for {
		time.Sleep(time.Hour)
	}
}
