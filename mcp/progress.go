// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/router"
)

// streamsOutput reports whether a client may follow tool's output as notifications/progress.
func streamsOutput(tool string) bool {
	switch tool {
	case toolExecute, toolInstall, toolWaitProc:
		return true
	}
	return false
}

// withProgress returns ctx asking the router for the command's output as it arrives, if the
// client sent a progress token with the call: each chunk becomes a notifications/progress
// whose message is the stream's name, ": " and the text ("stdout: hello\n", "stderr: ..."),
// and whose progress counts the chunks. (mcp-go's SendNotificationToClient drops a _meta
// param, so the stream is told in the message.) In stateless Streamable HTTP the first
// notification turns the call's response into an SSE stream that ends with the result.
//
// The handler calls flush before it returns its result: mcp-go v1.2.1 (handlePost in
// streamable_http.go) drops a notification its forwarder has taken off the session's channel
// but not yet written when the response is written, so flush waits until the channel is
// empty and the forwarder has had time to write what it took.
func withProgress(ctx context.Context, req mcpgo.CallToolRequest, logger *slog.Logger) (_ context.Context, flush func()) {
	meta := req.Params.Meta
	srv := server.ServerFromContext(ctx)
	session := server.ClientSessionFromContext(ctx)
	if meta == nil || meta.ProgressToken == nil || srv == nil || session == nil {
		return ctx, func() {}
	}
	token := meta.ProgressToken
	progress := 0
	var mu sync.Mutex // progress is read by flush, written by the router's stream goroutine
	ctx = router.WithOutput(ctx, func(c hostrpc.Chunk) {
		mu.Lock()
		progress++
		n := progress
		mu.Unlock()
		err := srv.SendNotificationToClient(ctx, string(mcpgo.MethodNotificationProgress), map[string]any{
			"progressToken": token,
			"progress":      n,
			"message":       c.Stream + ": " + strings.ToValidUTF8(string(c.Data), "\uFFFD"),
		})
		if err != nil {
			// A client that reads too slowly misses chunks, not output: the result has it all.
			logger.Debug("progress notification dropped", "request", router.RequestID(ctx), "seq", c.Seq, "err", err)
		}
	})
	return ctx, func() {
		mu.Lock()
		sent := progress > 0
		mu.Unlock()
		if !sent {
			return
		}
		deadline := time.Now().Add(notificationDrain)
		for len(session.NotificationChannel()) > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(notificationSettle)
	}
}

// How long flush waits for the notifications of a call to leave the session's channel, and
// then for the last one taken to be written.
const (
	notificationDrain  = time.Second
	notificationSettle = 5 * time.Millisecond
)
