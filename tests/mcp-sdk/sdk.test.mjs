// The official MCP TypeScript SDK client drives `mcpwarden run` (MCP mode by policy) with
// @modelcontextprotocol/server-everything as the sandboxed server. Run by the kernel test
// McpSdk.OfficialClientAgainstServerEverything (as root), which sets MCPWARDEN_BIN and
// MCPWARDEN_STATE_DIR, installs the packages (npm ci) and checks nothing is left behind.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

const here = dirname(fileURLToPath(import.meta.url));
const warden = process.env.MCPWARDEN_BIN;
const stateDir = process.env.MCPWARDEN_STATE_DIR;
assert.ok(warden && stateDir, "MCPWARDEN_BIN and MCPWARDEN_STATE_DIR must be set");
const server = join(here, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");

const policy = join(stateDir, "sdk-test.yaml");
writeFileSync(policy, `name: sdk-test
mcp:
  call_timeout: 30s
  tool_timeouts: { trigger-long-running-operation: 1500ms }
  max_string_bytes: 64Ki
  max_content_chars: 2000
  tools: { deny: ["gzip-*", "get-env"] }
`);

let client, transport, stderr = "";

before(async () => {
  transport = new StdioClientTransport({
    command: warden,
    args: ["run", "--policy", policy, "--state-dir", stateDir, "--", process.execPath, server, "stdio"],
    stderr: "pipe",
  });
  transport.stderr.on("data", (d) => { stderr += d; });
  client = new Client({ name: "mcpwarden-sdk-test", version: "0.0.1" });
  await client.connect(transport);
});

after(async () => {
  await client?.close();
  if (process.exitCode) console.error("mcpwarden stderr:\n" + stderr);
});

// The SDK client rejects with McpError; mcpwarden's structured error is in `data`.
async function refusal(promise) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof McpError, `expected an McpError, got ${e}`);
    return e;
  }
  assert.fail("the request was expected to fail");
}

test("lists tools without the denied ones", async () => {
  const names = (await client.listTools()).tools.map((t) => t.name);
  assert.ok(names.includes("echo"), names.join(","));
  assert.ok(names.includes("trigger-long-running-operation"));
  assert.ok(!names.includes("get-env"), "get-env is denied");
  assert.ok(!names.some((n) => n.startsWith("gzip-")), "gzip-* is denied");
});

test("calls echo", async () => {
  const r = await client.callTool({ name: "echo", arguments: { message: "hello through the sandbox" } });
  assert.equal(r.content[0].text, "Echo: hello through the sandbox");
  assert.equal(r._meta, undefined);
});

test("reads a resource", async () => {
  const r = await client.readResource({ uri: "demo://resource/dynamic/text/1" });
  assert.equal(r.contents.length, 1);
  assert.equal(typeof r.contents[0].text, "string");
});

test("gets a prompt", async () => {
  const r = await client.getPrompt({ name: "args-prompt", arguments: { city: "Lyon" } });
  assert.ok(JSON.stringify(r.messages).includes("Lyon"));
});

test("a long-running tool is cancelled by its per-call timeout", async () => {
  const started = Date.now();
  let progress = 0;
  const e = await refusal(client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 6, steps: 6 } },
    undefined,
    { onprogress: () => { progress += 1; } }));
  assert.equal(e.code, -31003);
  assert.equal(e.data.kind, "call_timeout");
  assert.equal(e.data.timeout_ms, 1500);
  assert.equal(e.data.tool, "trigger-long-running-operation");
  assert.ok(Date.now() - started < 5000, "answered at the deadline, not at the end of the operation");
  const seen = progress;
  // server-everything keeps sending progress after the cancellation: none may get through.
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(progress, seen, "progress after the timeout was dropped");
  const r = await client.callTool({ name: "echo", arguments: { message: "still here" } });
  assert.equal(r.content[0].text, "Echo: still here");
});

test("an oversized argument is refused before the server", async () => {
  const e = await refusal(client.callTool({ name: "echo", arguments: { message: "x".repeat(100 * 1024) } }));
  assert.equal(e.code, -31001);
  assert.equal(e.data.kind, "input_too_large");
  assert.equal(e.data.limit_name, "max_string_bytes");
  assert.equal(e.data.limit, 64 * 1024);
  assert.equal(e.data.observed, 100 * 1024);
});

test("a denied tool is refused", async () => {
  const e = await refusal(client.callTool({ name: "get-env", arguments: {} }));
  assert.equal(e.code, -31002);
  assert.equal(e.data.kind, "tool_denied");
  assert.equal(e.data.tool, "get-env");
});

test("a large output is truncated with metadata the SDK accepts", async () => {
  const r = await client.callTool({ name: "echo", arguments: { message: "y".repeat(10000) } });
  const text = r.content[0].text;
  assert.ok(text.startsWith("Echo: " + "y".repeat(1994)), text.slice(0, 40));
  assert.ok(text.includes("[mcpwarden: output truncated to 2000 of 10006 characters]"), text.slice(-80));
  assert.equal(r._meta["mcpwarden/truncated"], true);
  assert.equal(r._meta["mcpwarden/max_content_chars"], 2000);
  assert.equal(r._meta["mcpwarden/total_content_chars"], 10006);
});

test("structured content stays valid for its output schema", async () => {
  const tools = (await client.listTools()).tools;
  const t = tools.find((x) => x.name === "get-structured-content");
  assert.ok(t?.outputSchema, "the tool declares an outputSchema");
  // callTool validates structuredContent against outputSchema and throws if it does not fit.
  const r = await client.callTool({ name: "get-structured-content", arguments: { location: "New York" } });
  assert.equal(typeof r.structuredContent, "object");
});
