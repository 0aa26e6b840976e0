// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"fmt"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/router"
)

// tools are the tool definitions; their schemas state the router's limits.
func tools(cfg router.Config) map[string]mcpgo.Tool {
	envID := mcpgo.WithString(argEnv, mcpgo.Required(), mcpgo.MaxLength(64),
		mcpgo.Description("The environment's id, as create_environment or list_environments returned it"))
	runtimes := strings.Join(router.Runtimes(), ", ")
	processID := mcpgo.WithString(argProcess, mcpgo.Required(), mcpgo.MaxLength(64),
		mcpgo.Description("The process's id, as start_process returned it"))
	processResult := " Returns process_id, running, stdout and stderr (all output so far, capped; truncated says so), " +
		"and once running is false: exit_code, timed_out, killed, duration_ms. A finished process is forgotten once its end was returned."
	return map[string]mcpgo.Tool{
		toolCreate: mcpgo.NewTool(toolCreate,
			mcpgo.WithDescription("Create an isolated environment (a microVM) with the given runtime and wait until it runs. "+
				"It is destroyed after timeout_minutes without use."),
			mcpgo.WithString("runtime", mcpgo.Required(), mcpgo.Enum(router.Runtimes()...),
				mcpgo.Description("Runtime of the environment: "+runtimes)),
			mcpgo.WithString("name", mcpgo.MaxLength(64), mcpgo.Description("A name for the environment (default <runtime>-<id suffix>)")),
			mcpgo.WithInteger("timeout_minutes", mcpgo.Min(1), mcpgo.Max(int(cfg.MaxTTL.Minutes())), mcpgo.DefaultNumber(int(cfg.DefaultTTL.Minutes())),
				mcpgo.Description(fmt.Sprintf("Idle timeout in minutes (1-%d, default %d)", int(cfg.MaxTTL.Minutes()), int(cfg.DefaultTTL.Minutes())))),
			mcpgo.WithInteger("cpus", mcpgo.Min(1), mcpgo.Max(cfg.MaxCPUs), mcpgo.DefaultNumber(cfg.DefaultCPUs),
				mcpgo.Description(fmt.Sprintf("Virtual CPUs (1-%d, default %d)", cfg.MaxCPUs, cfg.DefaultCPUs))),
			mcpgo.WithInteger("memory_mib", mcpgo.Min(cfg.MinMemoryMiB), mcpgo.Max(cfg.MaxMemoryMiB), mcpgo.DefaultNumber(cfg.DefaultMemoryMiB),
				mcpgo.Description(fmt.Sprintf("Memory in MiB (%d-%d, default %d)", cfg.MinMemoryMiB, cfg.MaxMemoryMiB, cfg.DefaultMemoryMiB))),
			mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolDestroy: mcpgo.NewTool(toolDestroy,
			mcpgo.WithDescription("Destroy an environment and everything in it. Destroying one that is already gone is not an error."),
			envID,
			mcpgo.WithDestructiveHintAnnotation(true), mcpgo.WithIdempotentHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolList: mcpgo.NewTool(toolList,
			mcpgo.WithDescription("List your environments that are starting, running or being destroyed."),
			mcpgo.WithReadOnlyHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolGet: mcpgo.NewTool(toolGet,
			mcpgo.WithDescription("Show one environment: state, host, resources, times and its recent event history."),
			envID,
			mcpgo.WithReadOnlyHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolExecute: mcpgo.NewTool(toolExecute,
			mcpgo.WithDescription("Run code in an environment and return stdout, stderr, exit_code, duration_ms, truncated and timed_out. "+
				"A non-zero exit code is a normal result. Output beyond the host's cap is cut and truncated is true."),
			envID,
			mcpgo.WithString("code", mcpgo.Required(), mcpgo.MinLength(1), mcpgo.MaxLength(cfg.MaxCodeBytes),
				mcpgo.Description(fmt.Sprintf("The program (at most %d bytes)", cfg.MaxCodeBytes))),
			mcpgo.WithString("language", mcpgo.Enum(router.Runtimes()...),
				mcpgo.Description("Interpreter: "+runtimes+" (default: the environment's runtime)")),
			mcpgo.WithInteger("timeout_seconds", mcpgo.Min(1), mcpgo.Max(int(cfg.MaxExecTimeout.Seconds())), mcpgo.DefaultNumber(int(cfg.DefaultExecTimeout.Seconds())),
				mcpgo.Description(fmt.Sprintf("Time limit (1-%d seconds, default %d); the process group is killed after it", int(cfg.MaxExecTimeout.Seconds()), int(cfg.DefaultExecTimeout.Seconds())))),
			mcpgo.WithOpenWorldHintAnnotation(true),
		),
		toolStart: mcpgo.NewTool(toolStart,
			mcpgo.WithDescription("Start code in the background and return its process_id at once; it runs until it ends, "+
				"timeout_seconds passes or kill_process. Follow it with read_process, wait_process and kill_process. "+
				"At most 16 processes per environment; destroying the environment kills them."),
			envID,
			mcpgo.WithString("code", mcpgo.Required(), mcpgo.MinLength(1), mcpgo.MaxLength(cfg.MaxCodeBytes),
				mcpgo.Description(fmt.Sprintf("The program (at most %d bytes)", cfg.MaxCodeBytes))),
			mcpgo.WithString("language", mcpgo.Enum(router.Runtimes()...),
				mcpgo.Description("Interpreter: "+runtimes+" (default: the environment's runtime)")),
			mcpgo.WithInteger("timeout_seconds", mcpgo.Min(1), mcpgo.Max(int(hostrpc.MaxProcessTimeout.Seconds())),
				mcpgo.DefaultNumber(int(hostrpc.DefaultProcessTimeout.Seconds())),
				mcpgo.Description(fmt.Sprintf("Time limit (1-%d seconds, default %d); the process group is killed after it",
					int(hostrpc.MaxProcessTimeout.Seconds()), int(hostrpc.DefaultProcessTimeout.Seconds())))),
			mcpgo.WithOpenWorldHintAnnotation(true),
		),
		toolReadProc: mcpgo.NewTool(toolReadProc,
			mcpgo.WithDescription("Read a background process's output so far without waiting."+processResult),
			envID, processID,
			mcpgo.WithReadOnlyHintAnnotation(false), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolWaitProc: mcpgo.NewTool(toolWaitProc,
			mcpgo.WithDescription("Wait until a background process ends or timeout_seconds passes (then running is true); "+
				"call it again to keep waiting."+processResult),
			envID, processID,
			mcpgo.WithInteger("timeout_seconds", mcpgo.Min(1), mcpgo.Max(int(hostrpc.MaxProcessWait.Seconds())),
				mcpgo.DefaultNumber(int(hostrpc.DefaultProcessWait.Seconds())),
				mcpgo.Description(fmt.Sprintf("How long to wait (1-%d seconds, default %d)",
					int(hostrpc.MaxProcessWait.Seconds()), int(hostrpc.DefaultProcessWait.Seconds())))),
			mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolKillProc: mcpgo.NewTool(toolKillProc,
			mcpgo.WithDescription("Kill a background process (its whole process group) and return its final output."+processResult),
			envID, processID,
			mcpgo.WithDestructiveHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolInstall: mcpgo.NewTool(toolInstall,
			mcpgo.WithDescription("Install packages with the environment's package manager (pip for python, npm for node, apt for shell)."),
			envID,
			mcpgo.WithString("packages", mcpgo.Required(), mcpgo.MinLength(1),
				mcpgo.Description(fmt.Sprintf("Space-separated package specs, at most %d, e.g. \"requests numpy==2.1.0\"", cfg.MaxPackages))),
			mcpgo.WithOpenWorldHintAnnotation(true),
		),
		toolWrite: mcpgo.NewTool(toolWrite,
			mcpgo.WithDescription(fmt.Sprintf("Write a file (at most %d bytes), creating parent directories. "+
				"Send binary content as base64 with encoding base64.", cfg.MaxFileBytes)),
			envID,
			mcpgo.WithString(argPath, mcpgo.Required(), mcpgo.MaxLength(4096), mcpgo.Description("Absolute path, e.g. /home/sandbox/main.py")),
			mcpgo.WithString("content", mcpgo.Required(), mcpgo.Description("The file's content, as text or base64 (see encoding)")),
			mcpgo.WithString(argEncoding, mcpgo.Enum(encUTF8, encBase64), mcpgo.DefaultString(encUTF8),
				mcpgo.Description("utf-8 (default) or base64 for binary content")),
			mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolRead: mcpgo.NewTool(toolRead,
			mcpgo.WithDescription(fmt.Sprintf("Read a file (at most %d bytes). Content that is not valid UTF-8 comes back as base64.", cfg.MaxFileBytes)),
			envID,
			mcpgo.WithString(argPath, mcpgo.Required(), mcpgo.MaxLength(4096), mcpgo.Description("Absolute path")),
			mcpgo.WithString(argEncoding, mcpgo.Enum(encUTF8, encBase64), mcpgo.DefaultString(encUTF8),
				mcpgo.Description("utf-8 (default) or base64")),
			mcpgo.WithReadOnlyHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolListFile: mcpgo.NewTool(toolListFile,
			mcpgo.WithDescription("List a directory: name, size, is_dir, mode, modified for each entry."),
			envID,
			mcpgo.WithString(argPath, mcpgo.MaxLength(4096), mcpgo.DefaultString(defaultDir),
				mcpgo.Description("Absolute path of the directory (default "+defaultDir+")")),
			mcpgo.WithBoolean("recursive", mcpgo.DefaultBool(false), mcpgo.Description("List the whole tree below path")),
			mcpgo.WithReadOnlyHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
	}
}
