// Package hostagent is the per-host agent of a waggle cluster: it consumes the placements of its
// host from the event log, admits them by free capacity, boots and stops the microVMs, serves the
// exec/file RPC for its environments, enforces idle TTLs, reconciles VMs with the log on start,
// and reports the failure of peer hosts that membership declares dead.
//
// Every lifecycle step is idempotent per environment: the agent folds the environment's
// aggregate before it acts and appends with optimistic concurrency, so a redelivered placement
// never boots a second VM and a conflicting writer makes it re-read, not overwrite.
//
// RPC limits: requests and replies are single NATS messages. A file larger than one reply can
// carry (about 3/4 of the server's max payload, base64 in JSON) is refused with code too_large
// and the limit in the message; there is no chunking. Exec output is capped per stream
// (Config.MaxOutputBytes) and cut further to fit a reply, with truncated set.
package hostagent
