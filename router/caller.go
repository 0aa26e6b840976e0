// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/oklog/ulid/v2"
)

// Principal is an authenticated caller: the tenant that owns what it creates and the API key
// it used.
type Principal struct {
	Tenant string
	KeyID  string
}

// String is the principal as events record it: "<tenant>/<key id>".
func (p Principal) String() string { return p.Tenant + "/" + p.KeyID }

type principalKey struct{}
type requestIDKey struct{}

// WithPrincipal returns ctx carrying the caller.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom is the caller carried by ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// NewRequestID is a fresh request id: a lower-case ULID.
func NewRequestID() string { return strings.ToLower(ulid.Make().String()) }

// WithRequestID returns ctx carrying the id of one tool call; it becomes the correlation id of
// the events and host requests the call causes.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the request id carried by ctx, or "" when there is none.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// Kinds of caller-facing errors; they label metrics.
const (
	KindBadRequest = "bad_request"
	KindNotFound   = "not_found"
	KindNotRunning = "not_running"
	KindTooLarge   = "too_large"
	KindLimit      = "limit"
	KindNoCapacity = "no_capacity"
	KindNoHost     = "no_host"
	KindFailed     = "failed"  // a host failed or timed out doing what was asked
	KindTimeout    = "timeout" // a wait ran out
	KindBusy       = "busy"    // too many calls in progress (the tenant's, an environment's or a host's); safe to retry
)

// UserError is a failure the caller can understand and act on: its message says what was
// wrong and what is allowed. Every other error is internal.
type UserError struct {
	Kind string
	Msg  string
}

func (e *UserError) Error() string { return e.Msg }

// userErr builds a UserError with a formatted message.
func userErr(kind, format string, args ...any) error {
	return &UserError{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// AsUserError reports whether err is (or wraps) a UserError.
func AsUserError(err error) (*UserError, bool) {
	var ue *UserError
	ok := errors.As(err, &ue)
	return ue, ok
}

// notFound is the answer for an unknown environment and for one of another tenant alike, so
// that no tenant learns another's environment ids.
func notFound(env string) error {
	return userErr(KindNotFound, "environment %q not found; list_environments shows yours", env)
}
