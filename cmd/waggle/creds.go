// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/internal/fsutil"
)

func newCredsCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "creds",
		Short: "Make, list and revoke the NATS credentials of the cluster's roles (decentralized JWT)",
		Long: "Every NATS connection of a waggle cluster authenticates with a role's credential (.creds file)\n" +
			"and the server lets each role do only what it needs. The credentials directory holds the\n" +
			"cluster's keys (keep it private) and the roles' .creds files; `waggle up` and `waggle nats`\n" +
			"create it in <data-dir>/creds on first start.",
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", credsDir(defaultDataDir), "credentials directory")

	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the cluster's trust (keys, JWTs) and the admin, operator, router and projector credentials",
		Long: "Create the trust once and copy the directory to every `waggle nats` node of a cluster\n" +
			"(--creds-dir); a standalone node creates its own on first start.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := openTrust(cmd.Context(), cmd.ErrOrStderr(), dir, true,
				adminRole, operatorRole, routerRole, access.Role{Kind: access.Projector, ID: access.DefaultProjector})
			if err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), dir)
			}
			return err
		},
	}

	var kind, hostID, name, out string
	create := &cobra.Command{
		Use:   "create --role admin|operator|router|projector|hostagent [--host-id H] [--name N]",
		Short: "Make a new credential for a role (for a separate process); prints where it is and its key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id := hostID
			if kind == access.Projector {
				id = name
			} else if name != "" {
				return fmt.Errorf("--name is a projector's replica name; role %s takes none", kind)
			}
			if kind != access.HostAgent && hostID != "" {
				return fmt.Errorf("--host-id is for role %s only", access.HostAgent)
			}
			r, err := access.NewRole(kind, id)
			if err != nil {
				return err
			}
			trust, err := access.Open(dir)
			if err != nil {
				return err
			}
			creds, pub, err := trust.Issue(r)
			if err != nil {
				return err
			}
			if out == "-" {
				_, err := cmd.OutOrStdout().Write(creds)
				return err
			}
			if out == "" {
				out = filepath.Join(dir, r.CredsFile())
			}
			if err := fsutil.WriteFileAtomic(out, creds, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\n", out, r.User(), pub)
			return nil
		},
	}
	create.Flags().StringVar(&kind, "role", "", "role: "+strings.Join(access.Kinds(), ", "))
	create.Flags().StringVar(&hostID, "host-id", "", "the host agent's host id (role hostagent)")
	create.Flags().StringVar(&name, "name", "", "the projector's replica name (role projector; default "+access.DefaultProjector+")")
	create.Flags().StringVar(&out, "out", "", "where to write it (default: its file in --dir; - for stdout); an existing file is replaced")
	_ = create.MarkFlagRequired("role")

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the credentials in the directory: file, user, public key, revoked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			trust, err := access.Open(dir)
			if err != nil {
				return err
			}
			files, err := filepath.Glob(filepath.Join(dir, "*.creds"))
			if err != nil {
				return err
			}
			sort.Strings(files)
			revoked := trust.Revocations()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FILE\tUSER\tPUBLIC KEY\tREVOKED")
			for _, f := range files {
				uc, err := access.ReadCreds(f)
				if err != nil {
					return err
				}
				when := ""
				if at, ok := revoked[uc.Subject]; ok {
					when = time.Unix(at, 0).UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", filepath.Base(f), uc.Name, uc.Subject, when)
			}
			return tw.Flush()
		},
	}

	var natsURL string
	revoke := &cobra.Command{
		Use:   "revoke USER-KEY|CREDS-FILE",
		Short: "Refuse a credential from now on, and tell the running NATS servers",
		Long: "Add the user's public key to the account's revocation list and push the new account JWT\n" +
			"to the servers at --nats-url with the system account's credential (sys.creds); servers that\n" +
			"were not reached learn it at their next start from this directory. To rotate a role's\n" +
			"credential: create a new one, give it to the role and restart it, then revoke the old one.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			trust, err := access.Open(dir)
			if err != nil {
				return err
			}
			pub := args[0]
			if _, err := os.Stat(pub); err == nil {
				uc, err := access.ReadCreds(pub)
				if err != nil {
					return err
				}
				pub = uc.Subject
			}
			if err := trust.Revoke(pub); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s in %s\n", pub, dir)
			if natsURL == "" {
				return nil
			}
			if err := trust.Push(cmd.Context(), natsURL); err != nil {
				return fmt.Errorf("revoked in %s, but the servers at %s were not told (they learn it at their next start): %w", dir, natsURL, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "the servers at %s refuse it now\n", natsURL)
			return nil
		},
	}
	revoke.Flags().StringVar(&natsURL, "nats-url", nats.DefaultURL, "NATS servers to push the account to (empty: none)")

	natsConfig := &cobra.Command{
		Use:   "nats-config",
		Short: "Print the trust block of a stock nats-server configuration for this cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			trust, err := access.Open(dir)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), natsServerTrust(trust))
			return err
		},
	}
	cmd.AddCommand(initCmd, create, ls, revoke, natsConfig)
	return cmd
}

// natsServerTrust is the part of a nats-server configuration that makes it trust the cluster's
// operator and know its accounts.
func natsServerTrust(t *access.Trust) string {
	auth := t.Server()
	var b strings.Builder
	fmt.Fprintf(&b, "# waggle's NATS trust (from `waggle creds nats-config`); include it from each node's config.\n")
	fmt.Fprintf(&b, "operator: %q\nsystem_account: %s\n", auth.OperatorJWT, auth.SystemAccount)
	fmt.Fprintf(&b, "max_control_line: %d\n", 64<<10)
	fmt.Fprintf(&b, "resolver: { type: full, dir: \"./jwt\", allow_delete: false }\nresolver_preload: {\n")
	keys := make([]string, 0, len(auth.AccountJWTs))
	for k := range auth.AccountJWTs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: %q\n", k, auth.AccountJWTs[k])
	}
	b.WriteString("}\n")
	return b.String()
}
