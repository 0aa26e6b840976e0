// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
)

// File contents too large for one NATS message travel through a JetStream object store: the
// sender puts an object under a fresh name and sends that name as the request's or reply's
// ContentRef; the receiver gets the object and deletes it. An object nobody deletes (the
// receiver gave up) expires after TransferTTL.
const (
	// TransferBucket is the object store bucket of transfers (file storage).
	TransferBucket = "waggle_transfer"
	// TransferTTL is how long an object lives when nobody deletes it.
	TransferTTL = 10 * time.Minute
	// Envelope is the room kept in a message for everything around a file's base64 bytes: the
	// JSON fields, an escaped path of up to 4096 bytes, headers.
	Envelope = 64 << 10
)

// Errors of Transfers.Get that callers branch on.
var (
	ErrTransferNotFound = errors.New("transfer object not found (expired or already taken)")
	ErrTransferTooLarge = errors.New("transfer object too large")
	ErrInvalidRef       = errors.New("invalid transfer object name")
)

// Inline reports whether size bytes of file content fit in one NATS message of at most
// maxPayload bytes (as base64 in JSON, with the Envelope); larger contents need a transfer.
func Inline(size int, maxPayload int64) bool {
	return (int64(size)+2)/3*4+Envelope <= maxPayload
}

// SetupTransfers creates the transfer bucket, or brings its settings back (the admin's setup;
// routers and host agents only bind to it).
func SetupTransfers(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      TransferBucket,
		Description: "waggle file contents in transit between routers and host agents",
		TTL:         TransferTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return fmt.Errorf("set up transfer bucket %s: %w", TransferBucket, err)
	}
	return nil
}

// Transfers puts, gets and deletes transfer objects. It binds to the bucket on first use, so a
// process that never moves a large file never touches it.
type Transfers struct{ b lazyBucket }

// NewTransfers returns the transfers of the JetStream domain js talks to.
func NewTransfers(js jetstream.JetStream) *Transfers {
	return &Transfers{b: lazyBucket{js: js, name: TransferBucket}}
}

// bucket binds to the transfer bucket.
func (t *Transfers) bucket(ctx context.Context) (jetstream.ObjectStore, error) { return t.b.open(ctx) }

// lazyBucket binds to an object store bucket on first use.
type lazyBucket struct {
	js   jetstream.JetStream
	name string

	mu    sync.Mutex
	store jetstream.ObjectStore // nil until first use
}

func (b *lazyBucket) open(ctx context.Context) (jetstream.ObjectStore, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.store != nil {
		return b.store, nil
	}
	store, err := b.js.ObjectStore(ctx, b.name)
	if err != nil {
		return nil, fmt.Errorf("open object store bucket %s: %w", b.name, err)
	}
	b.store = store
	return store, nil
}

// Put stores content as a new object and returns its name (a ULID) for a ContentRef.
func (t *Transfers) Put(ctx context.Context, content []byte) (string, error) {
	store, err := t.bucket(ctx)
	if err != nil {
		return "", err
	}
	ref := ulid.Make().String()
	if _, err := store.PutBytes(ctx, ref, content); err != nil {
		return "", fmt.Errorf("put transfer object %s (%d bytes): %w", ref, len(content), err)
	}
	return ref, nil
}

// Get reads the object ref, which must hold at most max bytes: ErrTransferNotFound when there
// is no such object, ErrTransferTooLarge when it is larger. The object stays; call Delete.
func (t *Transfers) Get(ctx context.Context, ref string, max int64) ([]byte, error) {
	if err := checkRef(ref); err != nil {
		return nil, err
	}
	store, err := t.bucket(ctx)
	if err != nil {
		return nil, err
	}
	obj, err := store.Get(ctx, ref)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("get transfer object %s: %w", ref, ErrTransferNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get transfer object %s: %w", ref, err)
	}
	defer obj.Close()
	info, err := obj.Info()
	if err != nil {
		return nil, fmt.Errorf("get transfer object %s: %w", ref, err)
	}
	if info.Size > uint64(max) {
		return nil, fmt.Errorf("get transfer object %s: %w: %d bytes, the limit is %d", ref, ErrTransferTooLarge, info.Size, max)
	}
	// The reader checks the object's digest at its end.
	data, err := io.ReadAll(io.LimitReader(obj, max+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("get transfer object %s: %w", ref, err)
	case int64(len(data)) > max:
		return nil, fmt.Errorf("get transfer object %s: %w: more than %d bytes", ref, ErrTransferTooLarge, max)
	case uint64(len(data)) != info.Size:
		return nil, fmt.Errorf("get transfer object %s: read %d bytes of %d", ref, len(data), info.Size)
	}
	return data, nil
}

// Delete removes the object ref; one that is already gone is not an error.
func (t *Transfers) Delete(ctx context.Context, ref string) error {
	if err := checkRef(ref); err != nil {
		return err
	}
	store, err := t.bucket(ctx)
	if err != nil {
		return err
	}
	if err := store.Delete(ctx, ref); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete transfer object %s: %w", ref, err)
	}
	return nil
}

// checkRef accepts only names Put makes, so a request cannot name other objects.
func checkRef(ref string) error {
	if _, err := ulid.ParseStrict(ref); err != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalidRef, ref, err)
	}
	return nil
}
