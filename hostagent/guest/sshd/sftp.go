// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

//go:build linux

package sshd

import (
	"errors"
	"fmt"
	"io"

	"github.com/pkg/sftp"
)

// ServeSFTP serves the SFTP protocol on in/out until the client goes away, with relative paths
// resolved against workDir. It is the body of the SFTP server process (Config.SFTPCommand), which
// runs with the sandbox user's identity, so every file operation is checked as that user.
func ServeSFTP(in io.Reader, out io.WriteCloser, workDir string) error {
	srv, err := sftp.NewServer(stdio{in, out}, sftp.WithServerWorkingDirectory(workDir))
	if err != nil {
		return fmt.Errorf("sftp server: %w", err)
	}
	if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("sftp server: %w", err)
	}
	return nil
}

type stdio struct {
	io.Reader
	io.WriteCloser
}
