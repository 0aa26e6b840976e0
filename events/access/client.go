// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package access

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// ConnectOptions are the options of a connection that authenticates with the credential in
// the .creds file at path: its user JWT and key, and the inbox prefix the user's permissions
// allow (its replies arrive there).
func ConnectOptions(path string) ([]nats.Option, error) {
	name, err := CredsUser(path)
	if err != nil {
		return nil, err
	}
	return []nats.Option{nats.UserCredentials(path), nats.CustomInboxPrefix(inboxPrefix(name))}, nil
}

// CredsInboxPrefix is the inbox prefix the user of the .creds file at path may subscribe
// under: other NATS clients need it too (natscli's --inbox-prefix).
func CredsInboxPrefix(path string) (string, error) {
	name, err := CredsUser(path)
	if err != nil {
		return "", err
	}
	return inboxPrefix(name), nil
}

// CredsUser is the user name in the .creds file at path (for a role, Role.User).
func CredsUser(path string) (string, error) {
	uc, err := ReadCreds(path)
	if err != nil {
		return "", err
	}
	if uc.Name == "" {
		return "", fmt.Errorf("NATS credentials %s: the user JWT has no name", path)
	}
	return uc.Name, nil
}

// durableTag starts the JWT tag that names a role's durable consumer.
const durableTag = "waggle-durable:"

// Durable is the name of the durable consumer the credential at path may use on the event
// stream (host agents and projectors): secret, so no other role can name it.
func Durable(path string) (string, error) {
	uc, err := ReadCreds(path)
	if err != nil {
		return "", err
	}
	for _, tag := range uc.Tags {
		if name, ok := strings.CutPrefix(tag, durableTag); ok {
			return name, nil
		}
	}
	return "", fmt.Errorf("NATS credentials %s (%s): no durable consumer in them: use the credential of a host agent or projector", path, uc.Name)
}

// ReadCreds reads the user claims (name, public key as Subject, permissions, tags) of the
// .creds file at path.
func ReadCreds(path string) (*jwt.UserClaims, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("NATS credentials %s: no such file (`waggle up` and `waggle nats` write them into <data-dir>/creds/; `waggle creds create` makes one)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("NATS credentials: %w", err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		return nil, fmt.Errorf("NATS credentials %s: %w", path, err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil, fmt.Errorf("NATS credentials %s: %w", path, err)
	}
	return uc, nil
}
