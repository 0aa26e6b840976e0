// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package access

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/internal/fsutil"
)

// Account names in the JWTs.
const (
	accountName = "WAGGLE"
	systemName  = "SYS"
)

// Files of a credentials directory. The seeds (.nk) are the keys of the trust: whoever holds
// account.nk can issue credentials; keep the directory 0700 and its files 0600.
const (
	operatorSeed = "operator.nk"
	operatorJWT  = "operator.jwt"
	accountSeed  = "account.nk"
	accountJWT   = "account.jwt"
	systemSeed   = "system.nk"
	systemJWT    = "system.jwt"
	// SystemCreds is the system account's user, for pushing account updates (revocations).
	SystemCreds = "sys.creds"
	lockFile    = ".lock"
)

// Trust is a cluster's decentralized JWT trust, kept in a credentials directory: an operator
// that signs the waggle account and the system account, and the waggle account that signs a
// user per role.
type Trust struct {
	dir                          string
	operator, account, system    nkeys.KeyPair
	operatorJWT, systemJWT       string
	accountClaims                *jwt.AccountClaims
	accountJWT                   string
	accountPub, systemPub, opPub string
}

// ErrNoTrust means a credentials directory holds no trust yet.
var ErrNoTrust = errors.New("no NATS trust in the credentials directory")

// Open loads the trust in dir; ErrNoTrust when there is none.
func Open(dir string) (*Trust, error) {
	t := &Trust{dir: dir}
	if _, err := os.Stat(filepath.Join(dir, accountSeed)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w %s: run `waggle up` or `waggle nats` once, or copy it from the node that made it", ErrNoTrust, dir)
	}
	if err := t.load(); err != nil {
		return nil, fmt.Errorf("credentials in %s: %w", dir, err)
	}
	return t, nil
}

// OpenOrCreate loads the trust in dir, creating it (keys, JWTs, mode 0600 in a 0700
// directory) when dir has none yet. It reports whether it created it.
func OpenOrCreate(ctx context.Context, dir string) (*Trust, bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("credentials directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("credentials directory: %w", err)
	}
	unlock, err := fsutil.Lock(ctx, filepath.Join(dir, lockFile), nil)
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	t, err := Open(dir)
	if err == nil || !errors.Is(err, ErrNoTrust) {
		return t, false, err
	}
	if t, err = create(dir); err != nil {
		return nil, false, fmt.Errorf("create credentials in %s: %w", dir, err)
	}
	return t, true, nil
}

func create(dir string) (*Trust, error) {
	t := &Trust{dir: dir}
	var err error
	if t.operator, err = nkeys.CreateOperator(); err != nil {
		return nil, err
	}
	if t.account, err = nkeys.CreateAccount(); err != nil {
		return nil, err
	}
	if t.system, err = nkeys.CreateAccount(); err != nil {
		return nil, err
	}
	if err := t.publicKeys(); err != nil {
		return nil, err
	}
	op := jwt.NewOperatorClaims(t.opPub)
	op.Name = "waggle"
	op.SystemAccount = t.systemPub
	if t.operatorJWT, err = op.Encode(t.operator); err != nil {
		return nil, fmt.Errorf("operator JWT: %w", err)
	}
	sys := jwt.NewAccountClaims(t.systemPub)
	sys.Name = systemName
	if t.systemJWT, err = sys.Encode(t.operator); err != nil {
		return nil, fmt.Errorf("system account JWT: %w", err)
	}
	acc := jwt.NewAccountClaims(t.accountPub)
	acc.Name = accountName
	acc.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit,
		Streams: jwt.NoLimit, Consumer: jwt.NoLimit, MaxAckPending: jwt.NoLimit,
		MemoryMaxStreamBytes: jwt.NoLimit, DiskMaxStreamBytes: jwt.NoLimit}
	if err := t.setAccount(acc); err != nil {
		return nil, err
	}
	for name, kp := range map[string]nkeys.KeyPair{operatorSeed: t.operator, accountSeed: t.account, systemSeed: t.system} {
		seed, err := kp.Seed()
		if err != nil {
			return nil, err
		}
		if err := writeSecret(filepath.Join(dir, name), seed); err != nil {
			return nil, err
		}
	}
	for name, token := range map[string]string{operatorJWT: t.operatorJWT, systemJWT: t.systemJWT} {
		if err := writeSecret(filepath.Join(dir, name), []byte(token)); err != nil {
			return nil, err
		}
	}
	creds, err := t.issueSystemUser()
	if err != nil {
		return nil, err
	}
	if err := writeSecret(filepath.Join(dir, SystemCreds), creds); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Trust) load() error {
	var err error
	read := func(name string) string {
		if err != nil {
			return ""
		}
		var raw []byte
		raw, err = os.ReadFile(filepath.Join(t.dir, name))
		return strings.TrimSpace(string(raw))
	}
	opSeed, accSeed, sysSeed := read(operatorSeed), read(accountSeed), read(systemSeed)
	t.operatorJWT, t.accountJWT, t.systemJWT = read(operatorJWT), read(accountJWT), read(systemJWT)
	if err != nil {
		return err
	}
	for _, k := range []struct {
		seed string
		kp   *nkeys.KeyPair
	}{{opSeed, &t.operator}, {accSeed, &t.account}, {sysSeed, &t.system}} {
		if *k.kp, err = nkeys.FromSeed([]byte(k.seed)); err != nil {
			return fmt.Errorf("read key: %w", err)
		}
	}
	if err := t.publicKeys(); err != nil {
		return err
	}
	if t.accountClaims, err = jwt.DecodeAccountClaims(t.accountJWT); err != nil {
		return fmt.Errorf("%s: %w", accountJWT, err)
	}
	if t.accountClaims.Subject != t.accountPub || t.accountClaims.Issuer != t.opPub {
		return fmt.Errorf("%s is not the account of %s signed by %s", accountJWT, accountSeed, operatorSeed)
	}
	return nil
}

func (t *Trust) publicKeys() error {
	var err error
	if t.opPub, err = t.operator.PublicKey(); err != nil {
		return err
	}
	if t.accountPub, err = t.account.PublicKey(); err != nil {
		return err
	}
	t.systemPub, err = t.system.PublicKey()
	return err
}

// setAccount signs acc with the operator key and stores it as the account's JWT.
func (t *Trust) setAccount(acc *jwt.AccountClaims) error {
	token, err := acc.Encode(t.operator)
	if err != nil {
		return fmt.Errorf("account JWT: %w", err)
	}
	if err := writeSecret(filepath.Join(t.dir, accountJWT), []byte(token)); err != nil {
		return err
	}
	t.accountClaims, t.accountJWT = acc, token
	return nil
}

// Dir is the credentials directory.
func (t *Trust) Dir() string { return t.dir }

// Server is what a NATS server needs to trust these credentials.
func (t *Trust) Server() events.ServerAuth {
	return events.ServerAuth{OperatorJWT: t.operatorJWT, SystemAccount: t.systemPub,
		AccountJWTs: map[string]string{t.accountPub: t.accountJWT, t.systemPub: t.systemJWT}}
}

// AccountJWT is the waggle account's JWT as it stands (with its revocations).
func (t *Trust) AccountJWT() string { return t.accountJWT }

// Issue makes a new user credential for role: a fresh key pair and a JWT signed by the account
// with the role's permissions, as the contents of a .creds file, and the user's public key.
func (t *Trust) Issue(r Role) ([]byte, string, error) {
	user, err := nkeys.CreateUser()
	if err != nil {
		return nil, "", err
	}
	pub, err := user.PublicKey()
	if err != nil {
		return nil, "", err
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = r.User()
	uc.Tags.Add("waggle-role:" + r.Kind)
	durable := ""
	if base := r.durableBase(); base != "" {
		var suffix [10]byte
		if _, err := rand.Read(suffix[:]); err != nil {
			return nil, "", err
		}
		// lower case: JWT tags are, and the name is read back from the tag
		durable = strings.ToLower(base + "_" + hex.EncodeToString(suffix[:]))
		uc.Tags.Add(durableTag + durable)
	}
	uc.Permissions = Permissions(r, durable)
	uc.AllowedConnectionTypes = jwt.StringList{jwt.ConnectionTypeStandard, jwt.ConnectionTypeInProcess}
	token, err := uc.Encode(t.account)
	if err != nil {
		return nil, "", fmt.Errorf("user JWT of %s: %w", r.User(), err)
	}
	seed, err := user.Seed()
	if err != nil {
		return nil, "", err
	}
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		return nil, "", err
	}
	return creds, pub, nil
}

// WriteCreds issues a credential for role into the directory (CredsFile, mode 0600), replacing
// one there, and returns its path and the user's public key.
func (t *Trust) WriteCreds(r Role) (string, string, error) {
	creds, pub, err := t.Issue(r)
	if err != nil {
		return "", "", err
	}
	path := filepath.Join(t.dir, r.CredsFile())
	return path, pub, writeSecret(path, creds)
}

// EnsureCreds is the path of role's credential in the directory, issued first if missing.
func (t *Trust) EnsureCreds(r Role) (string, error) {
	path := filepath.Join(t.dir, r.CredsFile())
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	path, _, err := t.WriteCreds(r)
	return path, err
}

// Revoke refuses the user with public key pub from now on: the account's JWT gets the key on
// its revocation list. The servers learn it when the new account JWT is pushed to them (see
// PushAccount) or at their next start from this directory.
func (t *Trust) Revoke(pub string) error {
	if !nkeys.IsValidPublicUserKey(pub) {
		return fmt.Errorf("%q is not a user public key (U...)", pub)
	}
	acc := *t.accountClaims
	acc.Revocations = jwt.RevocationList{}
	for k, v := range t.accountClaims.Revocations {
		acc.Revocations[k] = v
	}
	acc.RevokeAt(pub, time.Now())
	return t.setAccount(&acc)
}

// Revocations are the revoked user keys and when they were revoked (unix seconds).
func (t *Trust) Revocations() map[string]int64 {
	out := map[string]int64{}
	for k, v := range t.accountClaims.Revocations {
		out[k] = v
	}
	return out
}

func (t *Trust) issueSystemUser() ([]byte, error) {
	user, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	pub, err := user.PublicKey()
	if err != nil {
		return nil, err
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = "sys"
	token, err := uc.Encode(t.system)
	if err != nil {
		return nil, err
	}
	seed, err := user.Seed()
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(token, seed)
}

// writeSecret writes data to path with mode 0600, atomically.
func writeSecret(path string, data []byte) error {
	if err := fsutil.WriteFileAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Push tells the servers at url the account's JWT as it stands (its revocations take effect at
// once), as the system account's user.
func (t *Trust) Push(ctx context.Context, url string) error {
	opts, err := ConnectOptions(filepath.Join(t.dir, SystemCreds))
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, append(opts, nats.Name("waggle creds"))...)
	if err != nil {
		return fmt.Errorf("connect as the system account: %w", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, "$SYS.REQ.CLAIMS.UPDATE", []byte(t.accountJWT))
	if err != nil {
		return fmt.Errorf("push the account: %w", err)
	}
	var resp struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("push the account: server answer %q: %w", msg.Data, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("push the account: %s", resp.Error.Description)
	}
	return nil
}
