// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/internal/fsutil"
)

// AptConfig says what AptInstall runs and where it keeps the extra keys.
type AptConfig struct {
	AptGet  string // the apt-get program
	KeysDir string // apt's directory of trusted keys
}

// DefaultAptConfig is the guest's: apt-get on PATH, keys in /etc/apt/trusted.gpg.d.
func DefaultAptConfig() AptConfig {
	return AptConfig{AptGet: "apt-get", KeysDir: "/etc/apt/trusted.gpg.d"}
}

// aptKeysName is the file of the host's extra apt keys, in KeysDir, with .asc (armored) or .gpg.
const aptKeysName = "waggle-packages"

// AptInstall is the guest's package installer (`waggle-init apt-install -- NAME...`), which
// the SSH server runs as root for a wire.AptInstallCommand request. It checks names again,
// trusts the OpenPGP keys it reads from keys (removing those of an earlier request when there
// are none), runs apt-get update (failing on any error) and apt-get install of exactly names,
// without recommends, writing apt's output to stdout and stderr. It returns the exit status:
// apt-get's, or 2 when it could not start one.
func AptInstall(cfg AptConfig, keys io.Reader, stdout, stderr io.Writer, names []string) int {
	if err := aptInstall(cfg, keys, stdout, stderr, names); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		fmt.Fprintln(stderr, "waggle apt-install:", err)
		return 2
	}
	return 0
}

func aptInstall(cfg AptConfig, keys io.Reader, stdout, stderr io.Writer, names []string) error {
	if err := wire.CheckAptPackages(names); err != nil {
		return err
	}
	if err := installAptKeys(cfg.KeysDir, keys); err != nil {
		return fmt.Errorf("apt keys: %w", err)
	}
	common := []string{"-q", "-o", "Dpkg::Use-Pty=0", "-o", "Acquire::Languages=none", "-o", "Acquire::Retries=2",
		// gz first: the package proxy verifies the .debs against the Packages files it can read.
		"-o", "Acquire::CompressionTypes::Order::=gz"}
	run := func(args ...string) error {
		cmd := exec.Command(cfg.AptGet, append(append([]string(nil), common...), args...)...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, stdout, stderr
		return cmd.Run()
	}
	if err := run("--error-on=any", "update"); err != nil {
		return err
	}
	return run(append([]string{"-y", "-o", "Dpkg::Options::=--force-confold", "--no-install-recommends", "install", "--"}, names...)...)
}

// installAptKeys writes the keys read from r (armored or binary OpenPGP, at most
// wire.MaxAptKeys bytes) into dir for apt to trust, or removes earlier ones if r is empty.
func installAptKeys(dir string, r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, wire.MaxAptKeys+1))
	if err != nil {
		return err
	}
	if len(data) > wire.MaxAptKeys {
		return fmt.Errorf("more than %d bytes", wire.MaxAptKeys)
	}
	asc, gpg := filepath.Join(dir, aptKeysName+".asc"), filepath.Join(dir, aptKeysName+".gpg")
	keep, drop := gpg, asc
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		keep, drop = asc, gpg
	}
	if err := os.Remove(drop); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(data) == 0 {
		if err := os.Remove(keep); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(keep, data, 0o644)
}
