// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"context"
	"log/slog"
	"strings"

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
func withProgress(ctx context.Context, req mcpgo.CallToolRequest, logger *slog.Logger) context.Context {
	meta := req.Params.Meta
	srv := server.ServerFromContext(ctx)
	if meta == nil || meta.ProgressToken == nil || srv == nil {
		return ctx
	}
	token := meta.ProgressToken
	progress := 0
	return router.WithOutput(ctx, func(c hostrpc.Chunk) {
		progress++
		err := srv.SendNotificationToClient(ctx, string(mcpgo.MethodNotificationProgress), map[string]any{
			"progressToken": token,
			"progress":      progress,
			"message":       c.Stream + ": " + strings.ToValidUTF8(string(c.Data), "\uFFFD"),
		})
		if err != nil {
			// A client that reads too slowly misses chunks, not output: the result has it all.
			logger.Debug("progress notification dropped", "request", router.RequestID(ctx), "seq", c.Seq, "err", err)
		}
	})
}
