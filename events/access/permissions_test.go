// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package access_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// The identities the table tries every action with; "none" connects without credentials.
const (
	admin    = "admin"
	operator = "operator"
	router   = "router"
	proj     = "projector"
	h1       = "hostagent-h1"
	h2       = "hostagent-h2"
)

var identities = []string{admin, operator, router, proj, h1, h2}

func roleOf(t *testing.T, id string) access.Role {
	t.Helper()
	kind, host, _ := strings.Cut(id, "-")
	r, err := access.NewRole(kind, host)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// cluster is a secured embedded server set up as the admin would (stream, buckets, object
// store) with a credential per identity.
type cluster struct {
	srv   *events.Server
	trust *access.Trust
	creds map[string]string
	admin *conn
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	trust, created, err := access.OpenOrCreate(t.Context(), filepath.Join(dir, "creds"))
	if err != nil || !created {
		t.Fatalf("create trust: %v (created %v)", err, created)
	}
	auth := trust.Server()
	srv, err := events.StartServer(events.ServerConfig{DataDir: filepath.Join(dir, "nats"), ServerName: "perm", Auth: &auth,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	c := &cluster{srv: srv, trust: trust, creds: map[string]string{}}
	for _, id := range identities {
		if c.creds[id], err = trust.EnsureCreds(roleOf(t, id)); err != nil {
			t.Fatal(err)
		}
	}
	c.admin = c.connect(t, admin)
	ctx := t.Context()
	if c.admin.log, err = events.OpenLog(ctx, c.admin.nc); err != nil {
		t.Fatal(err)
	}
	for _, b := range append(events.ViewBuckets(), events.TokensBucket, events.TenantsBucket, events.IdempotencyBucket) {
		if _, err := c.admin.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b}); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{hostrpc.TransferBucket, hostrpc.SnapshotBucket} {
		if _, err := c.admin.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: b}); err != nil {
			t.Fatal(err)
		}
	}
	// The durable consumers other roles must not take over.
	for _, d := range []struct{ id, filter string }{{h1, "waggle.env.h1.>"}, {proj, "waggle.>"}} {
		owner := c.connect(t, d.id)
		if _, err := owner.js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
			Durable: c.durable(t, d.id), FilterSubject: d.filter, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
			t.Fatalf("%s creates its durable consumer: %v", d.id, err)
		}
	}
	return c
}

// durable is the secret name of id's durable consumer.
func (c *cluster) durable(t *testing.T, id string) string {
	t.Helper()
	name, err := access.Durable(c.creds[id])
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// conn is one identity's connection; violations receives the permission errors the server
// reports on it.
type conn struct {
	id         string
	nc         *nats.Conn
	js         jetstream.JetStream
	log        *events.Log
	violations chan error
}

func (c *cluster) connect(t *testing.T, id string) *conn {
	t.Helper()
	cn := &conn{id: id, violations: make(chan error, 16)}
	opts, err := access.ConnectOptions(c.creds[id])
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			select {
			case cn.violations <- err:
			default:
			}
		}
	}))
	if cn.nc, err = c.srv.Connect(opts...); err != nil {
		t.Fatalf("connect as %s: %v", id, err)
	}
	t.Cleanup(cn.nc.Close)
	if cn.js, err = jetstream.New(cn.nc); err != nil {
		t.Fatal(err)
	}
	if c.admin != nil {
		if cn.log, err = events.BindLog(t.Context(), cn.nc); err != nil {
			t.Fatalf("%s binds the event log: %v", id, err)
		}
	}
	return cn
}

// freshEnv appends (as admin) the history an action needs before its own event: requested,
// then the given types, on a new environment of host.
func (c *cluster) freshEnv(ctx context.Context, host string, types ...string) (string, events.Head, error) {
	env := strings.ToLower(ulid.Make().String())
	head := events.Head{}
	for _, typ := range append([]string{events.EnvRequested}, types...) {
		ev, err := events.NewEnvEvent(host, env, typ, "test", nil)
		if err != nil {
			return "", head, err
		}
		if head, err = c.admin.log.Append(ctx, ev, head); err != nil {
			return "", head, err
		}
	}
	return env, head, nil
}

type action struct {
	name    string
	allowed []string
	do      func(ctx context.Context, c *cluster, cn *conn) error
}

func publish(subject string) func(context.Context, *cluster, *conn) error {
	return func(ctx context.Context, _ *cluster, cn *conn) error {
		if err := cn.nc.Publish(subject, []byte("x")); err != nil {
			return err
		}
		return refusal(ctx, cn)
	}
}

// refusal flushes cn and waits a moment for the server to refuse what was sent: it does so
// asynchronously, and the client reports it on another goroutine.
func refusal(ctx context.Context, cn *conn) error {
	if err := cn.nc.FlushWithContext(ctx); err != nil {
		return err
	}
	select {
	case err := <-cn.violations:
		return err
	case <-time.After(200 * time.Millisecond):
		return nil
	}
}

func subscribe(subject string) func(context.Context, *cluster, *conn) error {
	return func(ctx context.Context, _ *cluster, cn *conn) error {
		sub, err := cn.nc.SubscribeSync(subject)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
		return refusal(ctx, cn)
	}
}

// jsRequest sends a JetStream API request and reports the API's error, if any.
func jsRequest(subject string, body any) func(context.Context, *cluster, *conn) error {
	return func(ctx context.Context, _ *cluster, cn *conn) error {
		var raw []byte
		if body != nil {
			raw, _ = json.Marshal(body)
		}
		msg, err := cn.nc.RequestWithContext(ctx, subject, raw)
		if err != nil {
			return err
		}
		var resp struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return err
		}
		if resp.Error != nil {
			return resp.Error
		}
		return nil
	}
}

func kvPut(bucket string) func(context.Context, *cluster, *conn) error {
	return func(ctx context.Context, _ *cluster, cn *conn) error {
		kv, err := cn.js.KeyValue(ctx, bucket)
		if err != nil {
			return err
		}
		_, err = kv.Put(ctx, "k"+strings.ToLower(ulid.Make().String()), []byte(`{}`))
		return err
	}
}

func kvGet(bucket string) func(context.Context, *cluster, *conn) error {
	return func(ctx context.Context, c *cluster, cn *conn) error {
		adminKV, err := c.admin.js.KeyValue(ctx, bucket)
		if err != nil {
			return err
		}
		if _, err := adminKV.Put(ctx, "probe", []byte(`{}`)); err != nil {
			return err
		}
		kv, err := cn.js.KeyValue(ctx, bucket)
		if err != nil {
			return err
		}
		_, err = kv.Get(ctx, "probe")
		return err
	}
}

func TestRolePermissions(t *testing.T) {
	c := startCluster(t)
	all := identities
	envAppend := func(host, typ string, before ...string) func(context.Context, *cluster, *conn) error {
		return func(ctx context.Context, c *cluster, cn *conn) error {
			env, head, err := c.freshEnv(ctx, host, before...)
			if err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			ev, err := events.NewEnvEvent(host, env, typ, "test", nil)
			if err != nil {
				return err
			}
			_, err = cn.log.Append(ctx, ev, head)
			return err
		}
	}
	hostAppend := func(host, typ string) func(context.Context, *cluster, *conn) error {
		return func(ctx context.Context, _ *cluster, cn *conn) error {
			ev, err := events.NewHostEvent(host, typ, "test", nil)
			if err != nil {
				return err
			}
			_, err = cn.log.AppendNew(ctx, ev)
			return err
		}
	}
	streamCfg := func(maxAge time.Duration) jetstream.StreamConfig {
		cfg := events.StreamConfig(1, events.MinDuplicateWindow)
		cfg.MaxAge = maxAge
		return cfg
	}
	api := func(s string) string { return "$JS.API." + s }
	snapFile := filepath.Join(t.TempDir(), "memory") // a stored snapshot's one file
	if err := os.WriteFile(snapFile, []byte("memory"), 0o600); err != nil {
		t.Fatal(err)
	}
	actions := []action{
		// The event log: each role appends only its own event types, on its own host.
		{"append requested", []string{admin, router}, envAppend("h1", events.EnvRequested)},
		{"append placed", []string{admin, router}, envAppend("h1", events.EnvPlaced)},
		{"append destroy_requested on h1", []string{admin, router, h1}, envAppend("h1", events.EnvDestroyRequested, events.EnvPlaced)},
		{"append started on h1", []string{admin, h1}, envAppend("h1", events.EnvStarted, events.EnvPlaced, events.EnvStarting)},
		{"append exec on h1", []string{admin, h1}, envAppend("h1", events.EnvExec, events.EnvPlaced, events.EnvStarting, events.EnvStarted)},
		{"append destroyed on h1", []string{admin, h1}, envAppend("h1", events.EnvDestroyed, events.EnvDestroyRequested)},
		// Only the environment's own host pauses and resumes it (a router asks it over RPC).
		{"append paused on h1", []string{admin, h1}, envAppend("h1", events.EnvPaused, events.EnvPlaced, events.EnvStarting, events.EnvStarted)},
		{"append resumed on h1", []string{admin, h1}, envAppend("h1", events.EnvResumed, events.EnvPlaced, events.EnvStarting, events.EnvStarted, events.EnvPaused)},
		{"append lost on h1 (failure detection)", []string{admin, router, h1, h2}, envAppend("h1", events.EnvLost)},
		{"append moved on h1 (resumed elsewhere)", []string{admin, router}, envAppend("h1", events.EnvMoved, events.EnvLost)},
		{"append host h1 joined", []string{admin, h1}, hostAppend("h1", events.HostJoined)},
		{"append host h1 failed", []string{admin, h1, h2}, hostAppend("h1", events.HostFailed)},
		{"append an audit digest", []string{admin, proj}, func(ctx context.Context, _ *cluster, cn *conn) error {
			ev, err := events.NewAuditEvent(events.AuditDigest, "test", nil)
			if err != nil {
				return err
			}
			_, err = cn.log.AppendNew(ctx, ev)
			return err
		}},
		{"publish outside the stream's subjects", []string{admin}, publish("waggle.other.x")},
		// The stream's history: nobody may cut it, and only the admin configures it.
		// (the admin's update keeps the audit settings, as setup does; MaxAge would cut history)
		{"update the event stream", []string{admin}, jsRequest(api("STREAM.UPDATE."+events.StreamName), streamCfg(0))},
		{"update the event stream to expire history", nil, jsRequest(api("STREAM.UPDATE."+events.StreamName), streamCfg(time.Minute))},
		{"delete the event stream", nil, jsRequest(api("STREAM.DELETE."+events.StreamName), nil)},
		{"purge the event stream", nil, jsRequest(api("STREAM.PURGE."+events.StreamName), nil)},
		{"delete an event", nil, jsRequest(api("STREAM.MSG.DELETE."+events.StreamName), map[string]any{"seq": 1})},
		{"delete the tokens bucket", nil, jsRequest(api("STREAM.DELETE.KV_"+events.TokensBucket), nil)},
		{"delete a view bucket", []string{admin}, jsRequest(api("STREAM.DELETE.KV_"+events.ViewSlot(events.EnvsBucket, 2)), nil)},
		{"create a stream", []string{admin}, jsRequest(api("STREAM.CREATE.ROGUE"), jetstream.StreamConfig{Name: "ROGUE", Subjects: []string{"rogue.>"}})},
		{"read events one by one", []string{admin, operator, router, proj, h1, h2}, func(ctx context.Context, _ *cluster, cn *conn) error {
			l, err := events.BindLog(ctx, cn.nc)
			if err != nil {
				return err
			}
			_, _, err = l.Load(ctx, events.EnvAggregate("*", "*"))
			return err
		}},
		{"read the stream with a consumer", []string{admin, operator}, func(ctx context.Context, _ *cluster, cn *conn) error {
			l, err := events.BindLog(ctx, cn.nc)
			if err != nil {
				return err
			}
			return l.Replay(ctx, events.Position{}, nil, func(*events.Event) error { return nil })
		}},
		// Durable consumers belong to their role; their names are secret (the table tries them
		// as if they had leaked: only the operator's readers, which may take any name, then
		// reach them), and only the admin may list them.
		{"list the event stream's consumers", []string{admin}, jsRequest(api("CONSUMER.NAMES."+events.StreamName), map[string]any{})},
		{"take over host h1's placement consumer", []string{admin, operator, h1}, func(ctx context.Context, c *cluster, cn *conn) error {
			_, err := cn.js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
				Durable: c.durable(t, h1), FilterSubject: "waggle.env.h1.>", AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}},
		{"pull host h1's placements", []string{admin, operator, h1}, func(ctx context.Context, c *cluster, cn *conn) error {
			return jsRequest(api("CONSUMER.MSG.NEXT."+events.StreamName+"."+c.durable(t, h1)), nil)(ctx, c, cn)
		}},
		{"delete the projector's consumer", []string{admin, operator, proj}, func(ctx context.Context, c *cluster, cn *conn) error {
			err := jsRequest(api("CONSUMER.DELETE."+events.StreamName+"."+c.durable(t, proj)), nil)(ctx, c, cn)
			if strings.Contains(fmt.Sprint(err), "consumer not found") {
				return nil // allowed, and an earlier case deleted it already
			}
			return err
		}},
		// API keys, tenant reservations, the view.
		{"put an API key", []string{admin}, kvPut(events.TokensBucket)},
		{"read an API key", []string{admin, operator, router}, kvGet(events.TokensBucket)},
		{"put a tenant reservation", []string{admin, router}, kvPut(events.TenantsBucket)},
		{"put an idempotency key", []string{admin, router}, kvPut(events.IdempotencyBucket)},
		{"read an idempotency key", []string{admin, operator, router}, kvGet(events.IdempotencyBucket)},
		{"write the view", []string{admin, proj}, kvPut(events.EnvsBucket)},
		{"read the view", []string{admin, operator, router, proj}, kvGet(events.EnvsBucket)},
		// Host RPC and streamed output.
		{"call host h1's exec", []string{admin, router}, rpcCall(hostrpc.OpExec)},
		{"ping host h1 (failure detection; any host agent)", []string{admin, router, h1, h2}, rpcCall(hostrpc.OpPing)},
		{"serve host h1's RPC", []string{admin, h1}, subscribe(hostrpc.Subject("h1", hostrpc.OpExec))},
		{"listen to every host's RPC", []string{admin}, subscribe("waggle.rpc.>")},
		{"publish host h1's output", []string{admin, h1}, publish(hostrpc.StreamSubject("h1", "s1"))},
		{"read host h1's output", []string{admin, router}, subscribe(hostrpc.StreamSubject("h1", "s1"))},
		{"read host h1's replies", []string{admin, h1}, subscribe("_INBOX_hostagent-h1.>")},
		{"read every reply", []string{admin}, subscribe("_INBOX.>")},
		// File transfers.
		{"put a transfer object", []string{admin, router, h1, h2}, func(ctx context.Context, _ *cluster, cn *conn) error {
			t := hostrpc.NewTransfers(cn.js)
			ref, err := t.Put(ctx, []byte("content"))
			if err != nil {
				return err
			}
			if _, err := t.Get(ctx, ref, 100); err != nil {
				return err
			}
			return t.Delete(ctx, ref)
		}},
		// Stored snapshots (guest memory): host agents only.
		{"put, get and delete a stored snapshot", []string{admin, h1, h2}, func(ctx context.Context, _ *cluster, cn *conn) error {
			s := hostrpc.NewSnapshots(cn.js)
			if _, err := s.Put(ctx, "env1", []string{snapFile}); err != nil {
				return err
			}
			if _, err := s.Get(ctx, "env1", filepath.Join(t.TempDir(), "d"), 100); err != nil {
				return err
			}
			return s.Delete(ctx, "env1")
		}},
		{"read a stored snapshot", []string{admin, h1, h2}, func(ctx context.Context, c *cluster, cn *conn) error {
			if _, err := hostrpc.NewSnapshots(c.admin.js).Put(ctx, "env2", []string{snapFile}); err != nil {
				return err
			}
			_, err := hostrpc.NewSnapshots(cn.js).Get(ctx, "env2", filepath.Join(t.TempDir(), "d"), 100)
			return err
		}},
		{"delete a stored snapshot", []string{admin, h1, h2}, func(ctx context.Context, c *cluster, cn *conn) error {
			if _, err := hostrpc.NewSnapshots(c.admin.js).Put(ctx, "env3", []string{snapFile}); err != nil {
				return err
			}
			return hostrpc.NewSnapshots(cn.js).Delete(ctx, "env3")
		}},
		{"list the stored snapshots", []string{admin}, listObjects(hostrpc.SnapshotBucket)},
		{"read a stored snapshot's chunks from its stream", []string{admin}, func(ctx context.Context, c *cluster, cn *conn) error {
			if _, err := hostrpc.NewSnapshots(c.admin.js).Put(ctx, "env4", []string{snapFile}); err != nil {
				return err
			}
			stream, err := cn.js.Stream(ctx, "OBJ_"+hostrpc.SnapshotBucket)
			if err != nil {
				return err
			}
			if _, err := stream.GetMsg(ctx, stream.CachedInfo().State.FirstSeq); err != nil {
				return err
			}
			_, err = stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
			return err
		}},
		{"list the transfer objects", []string{admin, operator}, listObjects(hostrpc.TransferBucket)},
	}
	for _, a := range actions {
		for _, id := range all {
			t.Run(a.name+"/"+id, func(t *testing.T) {
				cn := c.connect(t, id)
				err := try(t, c, cn, a.do)
				want := slices.Contains(a.allowed, id)
				switch {
				case want && err != nil:
					t.Fatalf("%s may %s, but it failed: %v", id, a.name, err)
				case !want && err == nil:
					t.Fatalf("%s must not %s, but the broker let it", id, a.name)
				}
			})
		}
	}
}

// listObjects lists the objects of an object store bucket.
func listObjects(bucket string) func(context.Context, *cluster, *conn) error {
	return func(ctx context.Context, _ *cluster, cn *conn) error {
		store, err := cn.js.ObjectStore(ctx, bucket)
		if err != nil {
			return err
		}
		_, err = store.List(ctx)
		if errors.Is(err, jetstream.ErrNoObjectsFound) {
			return nil
		}
		return err
	}
}

// try runs do as cn and returns its error, or the permission violation the server reported
// while it ran (which ends it at once instead of waiting for a timeout).
func try(t *testing.T, c *cluster, cn *conn, do func(context.Context, *cluster, *conn) error) error {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var err error
	done := make(chan struct{})
	go func() { err = do(ctx, c, cn); close(done) }()
	select {
	case <-done:
		select {
		case v := <-cn.violations:
			return v
		default:
			return err
		}
	case v := <-cn.violations:
		cancel()
		<-done
		return v
	}
}

// TestUnauthenticatedRefused: a client without credentials, or with credentials of another
// trust, cannot connect at all.
func TestUnauthenticatedRefused(t *testing.T) {
	c := startCluster(t)
	if nc, err := nats.Connect(c.srv.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("no-credentials error %v does not say authorization", err)
	}
	other, _, err := access.OpenOrCreate(t.Context(), filepath.Join(t.TempDir(), "creds"))
	if err != nil {
		t.Fatal(err)
	}
	path, err := other.EnsureCreds(access.Role{Kind: access.Admin})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := access.ConnectOptions(path)
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(c.srv.ClientURL(), opts...); err == nil {
		nc.Close()
		t.Fatal("an admin credential of another trust connected")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestRevoke: a revoked credential is refused by a running server once the account is pushed,
// and by a server started later from the directory; a new credential for the role works.
func TestRevoke(t *testing.T) {
	c := startCluster(t)
	before := c.connect(t, router)
	creds, err := access.ReadCreds(c.creds[router])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.trust.Revoke(creds.Subject); err != nil {
		t.Fatal(err)
	}
	if err := c.trust.Push(t.Context(), c.srv.ClientURL()); err != nil {
		t.Fatal(err)
	}
	opts, err := access.ConnectOptions(c.creds[router])
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(c.srv.ClientURL(), opts...); err == nil {
		nc.Close()
		t.Fatal("a revoked credential connected")
	}
	deadline := time.Now().Add(5 * time.Second)
	for before.nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if before.nc.Status() == nats.CONNECTED {
		t.Fatal("the revoked credential's open connection was not closed")
	}
	path, _, err := c.trust.WriteCreds(roleOf(t, router))
	if err != nil {
		t.Fatal(err)
	}
	if opts, err = access.ConnectOptions(path); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(c.srv.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("the new router credential: %v", err)
	}
	nc.Close()
	if _, ok := c.trust.Revocations()[creds.Subject]; !ok {
		t.Fatal("the revocation is not in the account")
	}
}

// rpcCall is a request to host h1's op, answered by the admin standing in for h1.
func rpcCall(op string) func(context.Context, *cluster, *conn) error {
	return func(ctx context.Context, c *cluster, cn *conn) error {
		sub, err := c.admin.nc.Subscribe(hostrpc.Subject("h1", op), func(m *nats.Msg) { _ = m.Respond([]byte("{}")) })
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
		if err := c.admin.nc.Flush(); err != nil {
			return err
		}
		_, err = cn.nc.RequestWithContext(ctx, hostrpc.Subject("h1", op), []byte("{}"))
		return err
	}
}
