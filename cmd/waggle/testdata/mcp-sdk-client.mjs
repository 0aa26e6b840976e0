// An MCP client built on the official TypeScript SDK (@modelcontextprotocol/sdk) that walks
// through a short waggle session: create a python environment, run print(6*7), run a program
// that prints a line a second for 4 s while following its output as progress notifications,
// write and read a file, destroy the environment. It prints one JSON object with every step's
// result.
//
// Usage: WAGGLE_URL=http://127.0.0.1:8080/mcp WAGGLE_KEY=wgl_... node mcp-sdk-client.mjs
// (run it where node_modules holds the SDK; `go tool task mcp-sdk` installs it).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = process.env.WAGGLE_URL;
const key = process.env.WAGGLE_KEY;
if (!url) {
  console.error("WAGGLE_URL is not set");
  process.exit(2);
}

const headers = key ? { Authorization: `Bearer ${key}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "waggle-sdk-test", version: "1.0.0" });

// call invokes a tool and returns its structured content, the parsed text and the error flag;
// options are the SDK's request options (onprogress asks for progress notifications).
async function call(name, args, options) {
  const res = await client.callTool({ name, arguments: args }, undefined, options);
  const text = (res.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
  let parsed = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    // a tool error is plain text
  }
  return { isError: res.isError === true, text, json: parsed, structured: res.structuredContent ?? null };
}

const out = {};
let envId = null;
try {
  await client.connect(transport);
  out.server = client.getServerVersion();
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  out.create = await call("create_environment", { runtime: "python", timeout_minutes: 5 });
  envId = out.create.json?.environment_id ?? null;
  if (envId) {
    out.execute = await call("execute", { environment_id: envId, code: "print(6*7)" });
    // A line a second for 4 s: each line should arrive as a notification while it runs.
    const ticks = "import time\nfor i in range(4):\n    print('tick', i)\n    time.sleep(1)\n";
    const notes = [];
    const start = Date.now();
    const res = await call("execute", { environment_id: envId, code: ticks, timeout_seconds: 60 }, {
      onprogress: (p) => notes.push({ at_ms: Date.now() - start, progress: p.progress, message: p.message }),
      timeout: 120000,
    });
    out.progress = { notes, result_ms: Date.now() - start, result: res };
    out.write = await call("write_file", { environment_id: envId, path: "/home/sandbox/sdk.txt", content: "from the TypeScript SDK\n" });
    out.read = await call("read_file", { environment_id: envId, path: "/home/sandbox/sdk.txt" });
    out.destroy = await call("destroy_environment", { environment_id: envId });
    envId = null;
  }
} catch (err) {
  out.error = String(err?.stack ?? err);
} finally {
  if (envId) {
    try {
      await call("destroy_environment", { environment_id: envId });
    } catch {
      // already reported in out.error
    }
  }
  await client.close().catch(() => {});
}
console.log(JSON.stringify(out));
process.exit(out.error ? 1 : 0);
