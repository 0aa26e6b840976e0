// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envName is the environment variable that sets a flag: WAGGLE_ and the flag name in upper
// case with dashes as underscores (--nats-url -> WAGGLE_NATS_URL).
func envName(flag string) string {
	return "WAGGLE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindEnv sets every flag of cmd (and its parents) that was not given on the command line from
// its WAGGLE_<FLAG> variable, so each setting can come from either place.
func bindEnv(cmd *cobra.Command) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		val, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if err := cmd.Flags().Set(f.Name, val); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), val, err))
		}
	})
	return errors.Join(errs...)
}

// exitError carries a process exit code out of a command without an error message (e.g.
// `waggle vm run` exits with the guest command's code).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func exitCode(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}
