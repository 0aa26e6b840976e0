// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package access

import (
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// Role kinds. Every NATS connection of a waggle cluster authenticates as one of them.
const (
	// Admin sets the cluster up (stream, buckets) and manages API keys and the view: `waggle
	// up`/`waggle nats` at start, `waggle token`, `waggle projector rebuild`. It may do anything
	// but delete, purge or remove messages from the event stream or delete the tokens bucket.
	Admin = "admin"
	// Operator is read-only: tail and query the stream and the view, verify the audit trail
	// (`waggle events tail`, `replay`, `audit`, `env`, `hosts`, natscli).
	Operator = "operator"
	// Router appends what creates and destroys need and calls host RPC.
	Router = "router"
	// Projector folds the stream into the view; one credential per replica name.
	Projector = "projector"
	// HostAgent runs the VMs of one host; one credential per host id.
	HostAgent = "hostagent"
)

// Kinds are the role kinds, in the order `waggle creds` lists them.
func Kinds() []string { return []string{Admin, Operator, Router, Projector, HostAgent} }

// Role is one identity: a kind and, for host agents and projectors, the host id or replica name.
type Role struct {
	Kind string
	ID   string
}

// DefaultProjector is the replica name of a projector that is given none.
const DefaultProjector = "default"

// NewRole checks a role: a known kind, an id exactly when the kind needs one (host agents;
// projectors default to DefaultProjector), and an id that can be a subject token.
func NewRole(kind, id string) (Role, error) {
	switch kind {
	case Admin, Operator, Router:
		if id != "" {
			return Role{}, fmt.Errorf("role %s takes no id (got %q)", kind, id)
		}
		return Role{Kind: kind}, nil
	case Projector:
		if id == "" {
			id = DefaultProjector
		}
	case HostAgent:
		if id == "" {
			return Role{}, fmt.Errorf("role %s needs a host id", kind)
		}
	default:
		return Role{}, fmt.Errorf("unknown role %q: use one of %v", kind, Kinds())
	}
	if err := events.ValidID(id); err != nil {
		return Role{}, fmt.Errorf("role %s: %w", kind, err)
	}
	return Role{Kind: kind, ID: id}, nil
}

// User is the role's user name in its JWT (and in the server's logs).
func (r Role) User() string {
	if r.ID == "" {
		return r.Kind
	}
	return r.Kind + "-" + r.ID
}

// CredsFile is the role's file name in a credentials directory: admin.creds, router.creds,
// projector.creds (the default replica) or projector-<name>.creds, hostagent-<host>.creds.
func (r Role) CredsFile() string {
	if r.Kind == Projector && r.ID == DefaultProjector {
		return Projector + ".creds"
	}
	return r.User() + ".creds"
}

// InboxPrefix is the prefix of the role's reply subjects. A role may subscribe only under its
// own, so no role reads replies meant for another (a host's exec output, a file's content).
func (r Role) InboxPrefix() string { return inboxPrefix(r.User()) }

// inboxPrefix is the inbox prefix of a user.
func inboxPrefix(user string) string { return "_INBOX_" + user }

// ProjectorConsumer is the base name of projector replica name's durable consumer on the
// event stream (a credential adds its secret suffix, see Durable).
func ProjectorConsumer(name string) string { return "waggle-projector-" + name }

// HostConsumer is the base name of host's durable placement consumer on the event stream (a
// credential adds its secret suffix, see Durable).
func HostConsumer(host string) string { return "hostagent_" + host }

// durableBase is the base name of the role's durable consumer ("" when it has none).
func (r Role) durableBase() string {
	switch r.Kind {
	case HostAgent:
		return HostConsumer(r.ID)
	case Projector:
		return ProjectorConsumer(r.ID)
	}
	return ""
}

// Event types each writing role appends to environments.
var (
	routerEnvTypes = []string{events.EnvRequested, events.EnvPlaced, events.EnvDestroyRequested,
		// an environment stuck on a host that is gone: nobody else will end it
		events.EnvLost,
		// a lost paused environment resumed on another host
		events.EnvMoved}
	hostEnvTypes = []string{events.EnvRejected, events.EnvStarting, events.EnvStarted, events.EnvFailed,
		events.EnvTouched, events.EnvExec, events.EnvFileWritten, events.EnvFileRead,
		events.EnvDestroyRequested, events.EnvDestroyed, events.EnvLost, events.EnvPaused, events.EnvResumed}
	hostOwnTypes = []string{events.HostJoined, events.HostLeft, events.HostDrained}
)

// responseWindow is how long a host agent may answer an RPC: the longest call (an install or
// an exec of 300 s, a process wait) plus margin.
const responseWindow = 15 * time.Minute

// Permissions are what the broker lets role do; durable names the one durable consumer of a
// host agent or projector (Durable). Anything not allowed is refused.
//
// Consumer names are one subject token, so permissions cannot keep a role that may create
// consumers with any name (an operator's readers) from creating one named like another role's
// durable consumer and so taking over its deliveries. Durable consumers therefore have secret
// names (a random suffix in the owner's credential), consumer listings and advisories are
// denied to everyone but the admin, and routers and host agents read without consumers.
func Permissions(r Role, durable string) jwt.Permissions {
	var p perms
	p.sub(r.InboxPrefix() + ".>")
	switch r.Kind {
	case Admin:
		p.pub(">")
		p.sub(">")
		p.denyPub(
			"$JS.API.STREAM.DELETE."+events.StreamName,
			"$JS.API.STREAM.PURGE."+events.StreamName,
			"$JS.API.STREAM.MSG.DELETE."+events.StreamName,
			"$JS.API.STREAM.DELETE."+kvStream(events.TokensBucket),
		)
	case Operator:
		p.sub("waggle.env.>", "waggle.host.>", "waggle.audit.>")
		p.pub("$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.*",
			"$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>",
			"$JS.API.CONSUMER.CREATE.*", "$JS.API.CONSUMER.CREATE.*.>", "$JS.API.CONSUMER.INFO.*.*",
			"$JS.API.CONSUMER.MSG.NEXT.*.*", "$JS.API.CONSUMER.DELETE.*.*", "$JS.ACK.>", "$JS.FC.>", "$SRV.>")
		p.denyPub("$JS.API.CONSUMER.NAMES."+events.StreamName, "$JS.API.CONSUMER.LIST."+events.StreamName)
		// Stored snapshots hold guest memory: an operator sees the bucket's size, not its contents.
		snaps := "OBJ_" + hostrpc.SnapshotBucket
		p.denyPub("$JS.API.STREAM.MSG.GET."+snaps, "$JS.API.DIRECT.GET."+snaps, "$JS.API.DIRECT.GET."+snaps+".>",
			"$JS.API.CONSUMER.CREATE."+snaps, "$JS.API.CONSUMER.CREATE."+snaps+".>")
	case Router:
		for _, t := range routerEnvTypes {
			p.pub(events.EnvSubject("*", "*", t))
		}
		p.pub(hostrpc.Subject("*", "*"))
		p.sub("waggle.env.>", "waggle.stream.*.>")
		p.readEvents()
		for _, b := range append(events.ViewBuckets(), events.TokensBucket, events.TenantsBucket, events.IdempotencyBucket) {
			p.readKV(b)
		}
		p.pub(kvSubjects(events.TenantsBucket), kvSubjects(events.IdempotencyBucket))
		p.objects(hostrpc.TransferBucket)
	case Projector:
		p.pub("waggle.audit.>")
		p.readEvents()
		p.durable(events.StreamName, durable)
		for _, b := range events.ViewBuckets() {
			p.readKV(b)
			p.pub(kvSubjects(b))
		}
	case HostAgent:
		for _, t := range hostEnvTypes {
			p.pub(events.EnvSubject(r.ID, "*", t))
		}
		for _, t := range hostOwnTypes {
			p.pub(events.HostSubject(r.ID, t))
		}
		// Failure detection: a dead peer's host.failed and its environments' lost.
		p.pub(events.HostSubject("*", events.HostFailed), events.EnvSubject("*", "*", events.EnvLost),
			hostrpc.Subject("*", hostrpc.OpPing))
		p.pub(hostrpc.StreamSubject(r.ID, "*"))
		// The host's RPC service (micro: its endpoints and the $SRV discovery subjects).
		p.sub(hostrpc.Subject(r.ID, "*"), "$SRV.*", "$SRV.*.waggle-hostagent", "$SRV.*.waggle-hostagent.*")
		p.resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: responseWindow}
		p.readEvents()
		p.durable(events.StreamName, durable)
		p.objects(hostrpc.TransferBucket)
		// Paused environments' snapshots (--snapshot-store objects): any host agent may
		// restore one whose host failed. No other role reads them (they hold guest memory).
		p.objects(hostrpc.SnapshotBucket)
	}
	return p.jwt()
}

// perms collects allow and deny lists.
type perms struct {
	pubAllow, pubDeny, subAllow []string
	resp                        *jwt.ResponsePermission
}

func (p *perms) pub(s ...string)     { p.pubAllow = append(p.pubAllow, s...) }
func (p *perms) denyPub(s ...string) { p.pubDeny = append(p.pubDeny, s...) }
func (p *perms) sub(s ...string)     { p.subAllow = append(p.subAllow, s...) }

// readEvents lets the role read the event stream one message at a time (events.Log's Head,
// Load, Scan and Watch), with no consumer of its own.
func (p *perms) readEvents() {
	p.pub("$JS.API.STREAM.INFO."+events.StreamName, "$JS.API.STREAM.MSG.GET."+events.StreamName)
}

// readKV lets the role read bucket: get, watch and list keys (ephemeral consumers on the
// bucket's stream, which has no durable consumer to take over).
func (p *perms) readKV(bucket string) { p.readStream(kvStream(bucket)) }

func (p *perms) readStream(s string) {
	p.pub("$JS.API.STREAM.INFO."+s, "$JS.API.STREAM.MSG.GET."+s, "$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>",
		"$JS.API.CONSUMER.CREATE."+s, "$JS.API.CONSUMER.CREATE."+s+".>", "$JS.API.CONSUMER.INFO."+s+".*",
		"$JS.API.CONSUMER.DELETE."+s+".*", "$JS.FC."+s+".>")
}

// objects lets the role put, get and delete objects of an object store bucket whose names it
// knows; it cannot list them (no consumer on the bucket's metadata), so it reads only the
// transfers named in the requests and replies it gets.
func (p *perms) objects(bucket string) {
	s := "OBJ_" + bucket
	p.pub("$JS.API.STREAM.INFO."+s, "$JS.API.DIRECT.GET."+s+".$O."+bucket+".M.*", "$JS.API.STREAM.MSG.GET."+s,
		"$JS.API.CONSUMER.CREATE."+s+".*.$O."+bucket+".C.*", "$JS.API.CONSUMER.DELETE."+s+".*", "$JS.FC."+s+".>",
		"$O."+bucket+".>", "$JS.API.STREAM.PURGE."+s)
}

// durable lets the role create and consume exactly one durable consumer of stream.
func (p *perms) durable(stream, name string) {
	api := "$JS.API.CONSUMER."
	p.pub(api+"CREATE."+stream+"."+name, api+"CREATE."+stream+"."+name+".>", api+"DURABLE.CREATE."+stream+"."+name,
		api+"INFO."+stream+"."+name, api+"MSG.NEXT."+stream+"."+name, api+"DELETE."+stream+"."+name,
		api+"RESET."+stream+"."+name, "$JS.ACK."+stream+"."+name+".>")
}

func (p *perms) jwt() jwt.Permissions {
	out := jwt.Permissions{Resp: p.resp}
	out.Pub.Allow = dedupe(p.pubAllow)
	out.Pub.Deny = dedupe(p.pubDeny)
	out.Sub.Allow = dedupe(p.subAllow)
	return out
}

func dedupe(s []string) jwt.StringList {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

func kvStream(bucket string) string   { return "KV_" + bucket }
func kvSubjects(bucket string) string { return "$KV." + bucket + ".>" }
