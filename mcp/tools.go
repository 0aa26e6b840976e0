// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"fmt"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/router"
)

// timeoutArg is the timeout_seconds argument of a tool, in the range r of the Limits; what
// says what it bounds.
func timeoutArg(r hostrpc.Timeouts, what string) mcpgo.ToolOption {
	lo, hi, def := int(hostrpc.MinTimeout.Seconds()), int(r.Max.Seconds()), int(r.Default.Seconds())
	return mcpgo.WithInteger("timeout_seconds", mcpgo.Min(float64(lo)), mcpgo.Max(float64(hi)), mcpgo.DefaultNumber(float64(def)),
		mcpgo.Description(fmt.Sprintf("%s (%d-%d seconds, default %d)", what, lo, hi, def)))
}

// tools are the tool definitions; their schemas state the router's limits (cfg.Limits, the
// limits host agents check too).
func tools(cfg router.Config) map[string]mcpgo.Tool {
	l := cfg.Limits
	envID := mcpgo.WithString(argEnv, mcpgo.Required(), mcpgo.MaxLength(64),
		mcpgo.Description("The environment's id, as create_environment or list_environments returned it"))
	runtimes := strings.Join(router.Runtimes(), ", ")
	processID := mcpgo.WithString(argProcess, mcpgo.Required(), mcpgo.MaxLength(hostrpc.MaxProcessIDBytes),
		mcpgo.Description("The process's id, as start_process returned it"))
	code := mcpgo.WithString("code", mcpgo.Required(), mcpgo.MinLength(1), mcpgo.MaxLength(l.MaxCodeBytes),
		mcpgo.Description(fmt.Sprintf("The program (at most %d bytes)", l.MaxCodeBytes)))
	path := func(desc string, opts ...mcpgo.PropertyOption) mcpgo.ToolOption {
		return mcpgo.WithString(argPath, append(opts, mcpgo.MaxLength(l.MaxPathBytes),
			mcpgo.Description(fmt.Sprintf("%s (at most %d bytes)", desc, l.MaxPathBytes)))...)
	}
	processResult := " Returns process_id, running, stdout and stderr (all output so far, capped; truncated says so), " +
		"and once running is false: exit_code, timed_out, killed, duration_ms. A finished process is forgotten once its end was returned."
	return map[string]mcpgo.Tool{
		toolCreate: mcpgo.NewTool(toolCreate,
			mcpgo.WithDescription("Create an isolated environment (a microVM) with the given runtime and wait until it runs. "+
				"After timeout_minutes without use it is destroyed, or paused with on_timeout pause."),
			mcpgo.WithString("runtime", mcpgo.Required(), mcpgo.Enum(router.Runtimes()...),
				mcpgo.Description("Runtime of the environment: "+runtimes)),
			mcpgo.WithString("name", mcpgo.MaxLength(64), mcpgo.Description("A name for the environment (default <runtime>-<id suffix>)")),
			mcpgo.WithInteger("timeout_minutes", mcpgo.Min(1), mcpgo.Max(int(cfg.MaxTTL.Minutes())), mcpgo.DefaultNumber(int(cfg.DefaultTTL.Minutes())),
				mcpgo.Description(fmt.Sprintf("Idle timeout in minutes (1-%d, default %d)", int(cfg.MaxTTL.Minutes()), int(cfg.DefaultTTL.Minutes())))),
			mcpgo.WithInteger("cpus", mcpgo.Min(1), mcpgo.Max(cfg.MaxCPUs), mcpgo.DefaultNumber(cfg.DefaultCPUs),
				mcpgo.Description(fmt.Sprintf("Virtual CPUs (1-%d, default %d)", cfg.MaxCPUs, cfg.DefaultCPUs))),
			mcpgo.WithInteger("memory_mib", mcpgo.Min(cfg.MinMemoryMiB), mcpgo.Max(cfg.MaxMemoryMiB), mcpgo.DefaultNumber(cfg.DefaultMemoryMiB),
				mcpgo.Description(fmt.Sprintf("Memory in MiB (%d-%d, default %d)", cfg.MinMemoryMiB, cfg.MaxMemoryMiB, cfg.DefaultMemoryMiB))),
			mcpgo.WithString(argIdempotencyKey, mcpgo.MaxLength(router.MaxIdempotencyKeyLen),
				mcpgo.Description(fmt.Sprintf("Optional key (at most %d printable characters) that makes retrying safe: a create retried with the same key "+
					"within %d minutes returns the environment the first one created instead of starting another",
					router.MaxIdempotencyKeyLen, int(events.IdempotencyTTL.Minutes())))),
			mcpgo.WithString("on_timeout", mcpgo.Enum(events.OnTimeoutDestroy, events.OnTimeoutPause), mcpgo.DefaultString(events.OnTimeoutDestroy),
				mcpgo.Description("What the idle timeout does: destroy (default) or pause the environment")),
			mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolPause: mcpgo.NewTool(toolPause,
			mcpgo.WithDescription("Pause a running environment: its memory, running processes and files are saved on its host and its VM "+
				"stops, freeing the host's memory. Any later call on it resumes it first; resume_environment does so explicitly. "+
				"Returns status, snapshot_bytes and pause_ms."),
			envID,
			mcpgo.WithIdempotentHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolFork: mcpgo.NewTool(toolFork,
			mcpgo.WithDescription("Fork an environment: start a new one on the same host as a running copy of it, with the same files "+
				"and running processes at this moment (the source is paused only for the save) but its own identity (SSH keys, "+
				"random state); the two are independent from then on. Returns the new environment like create_environment."),
			envID,
			mcpgo.WithString("name", mcpgo.MaxLength(64), mcpgo.Description("A name for the fork (default <runtime>-<id suffix>)")),
			mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolResume: mcpgo.NewTool(toolResume,
			mcpgo.WithDescription("Resume a paused environment from its snapshot: its files are there and its processes go on running. "+
				"If its host has failed and the snapshot was also stored in the cluster (--snapshot-store objects), it is resumed on "+
				"another host as a new environment: the result's environment_id is then the new id (moved_from the old one, whose "+
				"get_environment names it as moved_to); use the new id from then on. Returns environment_id, status and resume_ms."),
			envID,
			mcpgo.WithIdempotentHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolDestroy: mcpgo.NewTool(toolDestroy,
			mcpgo.WithDescription("Destroy an environment and everything in it. Destroying one that is already gone is not an error."),
			envID,
			mcpgo.WithDestructiveHintAnnotation(true), mcpgo.WithIdempotentHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolList: mcpgo.NewTool(toolList,
			mcpgo.WithDescription("List your environments that are starting, running, paused or being destroyed."),
			mcpgo.WithReadOnlyHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolGet: mcpgo.NewTool(toolGet,
			mcpgo.WithDescription("Show one environment: state, host, resources, times and its recent event history."),
			envID,
			mcpgo.WithReadOnlyHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolExecute: mcpgo.NewTool(toolExecute,
			mcpgo.WithDescription(fmt.Sprintf("Run code in an environment and return stdout, stderr, exit_code, duration_ms, truncated and timed_out. "+
				"A non-zero exit code is a normal result. Output beyond %d bytes per stream is cut and truncated is true.", l.MaxOutputBytes)),
			envID, code,
			mcpgo.WithString("language", mcpgo.Enum(router.Runtimes()...),
				mcpgo.Description("Interpreter: "+runtimes+" (default: the environment's runtime)")),
			timeoutArg(l.Exec, "Time limit; the process group is killed after it"),
			mcpgo.WithOpenWorldHintAnnotation(true),
		),
		toolStart: mcpgo.NewTool(toolStart,
			mcpgo.WithDescription("Start code in the background and return its process_id at once; it runs until it ends, "+
				"timeout_seconds passes or kill_process. Follow it with read_process, wait_process and kill_process. "+
				fmt.Sprintf("At most %d processes per environment; destroying the environment kills them.", l.MaxProcesses)),
			envID, code,
			mcpgo.WithString("language", mcpgo.Enum(router.Runtimes()...),
				mcpgo.Description("Interpreter: "+runtimes+" (default: the environment's runtime)")),
			timeoutArg(l.Process, "Time limit; the process group is killed after it"),
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
			timeoutArg(l.ProcessWait, "How long to wait"),
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
				mcpgo.Description(fmt.Sprintf("Space-separated package specs, at most %d of at most %d bytes each, "+
					"e.g. \"requests numpy==2.1.0\" (pip) or \"lodash @types/node@20\" (npm)", l.MaxPackages, l.MaxPackageSpecBytes))),
			mcpgo.WithOpenWorldHintAnnotation(true),
		),
		toolWrite: mcpgo.NewTool(toolWrite,
			mcpgo.WithDescription(fmt.Sprintf("Write a file (at most %d bytes), creating parent directories. "+
				"Send binary content as base64 with encoding base64.", l.MaxFileBytes)),
			envID,
			path("Absolute path, e.g. "+hostrpc.HomeDir+"/main.py", mcpgo.Required()),
			mcpgo.WithString("content", mcpgo.Required(), mcpgo.Description("The file's content, as text or base64 (see encoding)")),
			mcpgo.WithString(argEncoding, mcpgo.Enum(encUTF8, encBase64), mcpgo.DefaultString(encUTF8),
				mcpgo.Description("utf-8 (default) or base64 for binary content")),
			mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolRead: mcpgo.NewTool(toolRead,
			mcpgo.WithDescription(fmt.Sprintf("Read a file (at most %d bytes). Content that is not valid UTF-8 comes back as base64.", l.MaxFileBytes)),
			envID,
			path("Absolute path", mcpgo.Required()),
			mcpgo.WithString(argEncoding, mcpgo.Enum(encUTF8, encBase64), mcpgo.DefaultString(encUTF8),
				mcpgo.Description("utf-8 (default) or base64")),
			mcpgo.WithReadOnlyHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
		toolListFile: mcpgo.NewTool(toolListFile,
			mcpgo.WithDescription(fmt.Sprintf("List a directory: name, size, is_dir, mode, modified for each entry (at most %d entries).", l.MaxListEntries)),
			envID,
			path("Absolute path of the directory (default "+hostrpc.HomeDir+")", mcpgo.DefaultString(hostrpc.HomeDir)),
			mcpgo.WithBoolean("recursive", mcpgo.DefaultBool(false), mcpgo.Description("List the whole tree below path")),
			mcpgo.WithReadOnlyHintAnnotation(true), mcpgo.WithOpenWorldHintAnnotation(false),
		),
	}
}
