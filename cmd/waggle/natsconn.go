// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
)

// natsFlags are how a command reaches the cluster's NATS: the servers, the credential it
// authenticates with, and TLS.
type natsFlags struct {
	url, creds, tlsCA, tlsCert, tlsKey string
}

// newNATSFlags adds the NATS connection flags to cmd and its subcommands.
func newNATSFlags(cmd *cobra.Command) *natsFlags {
	n := &natsFlags{}
	f := cmd.PersistentFlags()
	f.StringVar(&n.url, "nats-url", nats.DefaultURL, "NATS server URL(s), comma separated")
	f.StringVar(&n.creds, "nats-creds", "", "NATS credentials (.creds) of this role (default: the role's file in <data-dir>/creds/ if it is there)")
	f.StringVar(&n.tlsCA, "nats-tls-ca", "", "PEM CA bundle to verify the NATS servers' TLS certificates")
	f.StringVar(&n.tlsCert, "nats-tls-cert", "", "PEM client certificate for NATS servers that require one")
	f.StringVar(&n.tlsKey, "nats-tls-key", "", "PEM key of --nats-tls-cert")
	return n
}

// credsDir is the credentials directory inside a data directory.
func credsDir(dataDir string) string { return filepath.Join(dataDir, "creds") }

// credsFor is the credential a command uses as role: --nats-creds, else the role's file in the
// data directory's creds/ ($WAGGLE_DATA_DIR or /var/lib/waggle) if it exists, else none.
func (n *natsFlags) credsFor(r access.Role) string {
	if n.creds != "" {
		return n.creds
	}
	dataDir := os.Getenv("WAGGLE_DATA_DIR")
	if dataDir == "" {
		dataDir = defaultDataDir
	}
	path := filepath.Join(credsDir(dataDir), r.CredsFile())
	if _, err := os.Stat(path); err == nil {
		return path
	}
	return ""
}

// options are the connection options of client authenticating as role.
func (n *natsFlags) options(client string, r access.Role) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name(client), nats.MaxReconnects(-1)}
	if creds := n.credsFor(r); creds != "" {
		co, err := access.ConnectOptions(creds)
		if err != nil {
			return nil, err
		}
		opts = append(opts, co...)
	}
	if n.tlsCA != "" {
		opts = append(opts, nats.RootCAs(n.tlsCA))
	}
	if n.tlsCert != "" || n.tlsKey != "" {
		if n.tlsCert == "" || n.tlsKey == "" {
			return nil, errors.New("--nats-tls-cert and --nats-tls-key go together")
		}
		opts = append(opts, nats.ClientCert(n.tlsCert, n.tlsKey))
	}
	return opts, nil
}

// connect opens a connection (reconnecting for ever) as role.
func (n *natsFlags) connect(client string, r access.Role) (*nats.Conn, error) {
	opts, err := n.options(client, r)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(n.url, opts...)
	if err != nil {
		return nil, connectError(n.url, n.credsFor(r), r, err)
	}
	return nc, nil
}

// connectError explains a failed connection, above all a refused credential.
func connectError(url, creds string, r access.Role, err error) error {
	if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		return fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	if creds == "" {
		return fmt.Errorf("NATS at %s wants credentials: give --nats-creds FILE (the %s credential, %s in <data-dir>/creds/ of the node that made them, or `waggle creds create --role %s`): %w",
			url, r.Kind, r.CredsFile(), r.Kind, err)
	}
	return fmt.Errorf("NATS at %s refused the credential %s (revoked, or of another cluster?): %w", url, creds, err)
}

// bindLog connects as role and binds the event log with opts.
func (n *natsFlags) bindLog(ctx context.Context, client string, r access.Role, opts ...events.LogOption) (*nats.Conn, *events.Log, error) {
	nc, err := n.connect(client, r)
	if err != nil {
		return nil, nil, err
	}
	l, err := events.BindLog(ctx, nc, opts...)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, l, nil
}

// toolBindTimeout bounds how long a command that is no daemon waits for the event stream.
const toolBindTimeout = 15 * time.Second

// bindTool is bindLog for a command that is no daemon: it does not wait long for a stream
// that is not there.
func (n *natsFlags) bindTool(ctx context.Context, client string, r access.Role) (*nats.Conn, *events.Log, error) {
	bctx, cancel := context.WithTimeout(ctx, toolBindTimeout)
	defer cancel()
	return n.bindLog(bctx, client, r)
}

// withLog is a command's RunE that binds the event log as role, runs fn with it and closes the
// connection.
func (n *natsFlags) withLog(client string, r access.Role, fn func(cmd *cobra.Command, args []string, l *events.Log) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		nc, l, err := n.bindTool(cmd.Context(), client, r)
		if err != nil {
			return err
		}
		defer nc.Close()
		return fn(cmd, args, l)
	}
}

// The roles of the commands that are no daemon.
var (
	adminRole    = access.Role{Kind: access.Admin}
	operatorRole = access.Role{Kind: access.Operator}
	routerRole   = access.Role{Kind: access.Router}
)

// credsDurable is the durable consumer name in the credential at path, which must be role's.
func credsDurable(path string, r access.Role) (string, error) {
	user, err := access.CredsUser(path)
	if err != nil {
		return "", err
	}
	if user != r.User() {
		return "", fmt.Errorf("NATS credentials %s are %s's, not %s's: give this role's own (waggle creds create --role %s)", path, user, r.User(), r.Kind)
	}
	return access.Durable(path)
}

// openTrust opens the cluster's trust in dir (creating it when create is set and dir has none)
// and makes sure dir holds a credential for each of roles.
func openTrust(ctx context.Context, log io.Writer, dir string, create bool, roles ...access.Role) (*access.Trust, error) {
	var trust *access.Trust
	var err error
	if create {
		var created bool
		if trust, created, err = access.OpenOrCreate(ctx, dir); err == nil && created {
			fmt.Fprintf(log, "waggle: created the cluster's NATS credentials in %s (keep it private: whoever holds account.nk can make credentials)\n", dir)
		}
	} else {
		trust, err = access.Open(dir)
	}
	if err != nil {
		return nil, err
	}
	for _, r := range roles {
		if _, err := trust.EnsureCreds(r); err != nil {
			return nil, err
		}
	}
	return trust, nil
}

// trustOptions are the connect options of role's credential in trust's directory.
func trustOptions(trust *access.Trust, r access.Role) ([]nats.Option, error) {
	path, err := trust.EnsureCreds(r)
	if err != nil {
		return nil, err
	}
	return access.ConnectOptions(path)
}
