// Real servers from npm, each run directly and through `mcpwarden run`, compared: the same
// session gives the same bytes where mcpwarden changes nothing, and what it does change (a tool
// filter, truncation, deadlines around a server->client request, a refused network) is
// asserted. Run by the kernel test McpSdk.RealServersDirectAndThroughMcpwarden (as root), which
// sets MCPWARDEN_BIN and MCPWARDEN_STATE_DIR and checks that nothing is left behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";

const here = dirname(fileURLToPath(import.meta.url));
const warden = process.env.MCPWARDEN_BIN;
const stateDir = process.env.MCPWARDEN_STATE_DIR;
assert.ok(warden && stateDir, "MCPWARDEN_BIN and MCPWARDEN_STATE_DIR must be set");
const pkg = (name) => join(here, "node_modules/@modelcontextprotocol", name, "dist/index.js");
const everything = [process.execPath, pkg("server-everything"), "stdio"];
const memory = [process.execPath, pkg("server-memory")];
const thinking = [process.execPath, pkg("server-sequential-thinking")];

function policy(name, mcp) {
  const path = join(stateDir, `${name}.yaml`);
  writeFileSync(path, `name: ${name}\nmcp:\n${mcp}\n`);
  return path;
}
const plain = policy("servers-plain", "  call_timeout: 60s");

// Through mcpwarden, written as a client configuration writes it (no "--").
const through = (pol, argv, extra = []) => [warden, ["run", "--policy", pol, "--state-dir", stateDir, ...extra, ...argv]];
const direct = (argv) => [argv[0], argv.slice(1)];

// A raw line client: what the server (or mcpwarden) writes, byte for byte.
function raw([command, args], env = {}) {
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...env } });
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  let buf = "", stderr = "", next = 1;
  const waiting = new Map();
  child.stdout.on("data", (d) => {
    buf += d;
    for (let i; (i = buf.indexOf("\n")) >= 0;) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const m = JSON.parse(line);
      if (m.method === undefined && waiting.has(String(m.id))) waiting.get(String(m.id))(line);
    }
  });
  child.stderr.on("data", (d) => { stderr += d; });
  const send = (m) => child.stdin.write(JSON.stringify({ jsonrpc: "2.0", ...m }) + "\n");
  return {
    request(method, params = {}) {
      const id = next++;
      const answer = new Promise((resolve) => waiting.set(String(id), resolve));
      send({ id, method, params });
      return answer;
    },
    notify: (method, params = {}) => send({ method, params }),
    async close() {
      child.stdin.end();
      if (child.exitCode === null) await once(child, "exit");
      return { code: child.exitCode, stderr };
    },
  };
}

// initialize, initialized, then each request in turn; the raw answers.
async function session(cmd, requests, env) {
  const s = raw(cmd, env);
  const out = [await s.request("initialize", {
    protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "compare", version: "1" } })];
  s.notify("notifications/initialized");
  for (const [method, params] of requests) out.push(await s.request(method, params));
  const end = await s.close();
  return { lines: out, ...end };
}

async function same(argv, requests, env = {}, throughEnv = env) {
  const a = await session(direct(argv), requests, env);
  const b = await session(through(plain, argv, Object.entries(throughEnv).map(([k, v]) => `--env=${k}=${v}`)), requests);
  assert.deepEqual(b.lines, a.lines, "the same bytes through mcpwarden");
  assert.equal(b.code, 0, b.stderr);
  assert.ok(!b.stderr.includes("mcpwarden: warning"), b.stderr);
}

test("server-everything: the same bytes directly and through mcpwarden", async () => {
  await same(everything, [
    ["tools/list"],
    ["tools/call", { name: "echo", arguments: { message: "héllo" } }],
    ["tools/call", { name: "get-sum", arguments: { a: 2, b: 3 } }],
    ["tools/call", { name: "get-structured-content", arguments: { location: "Chicago" } }],
    ["tools/call", { name: "get-annotated-message", arguments: { messageType: "error" } }],
    ["prompts/list"],
    ["prompts/get", { name: "args-prompt", arguments: { city: "Lyon" } }],
  ]);
});

test("server-memory: the same bytes, and it can write its store", async () => {
  // server-memory writes next to its own script unless MEMORY_FILE_PATH says where: in the
  // sandbox that is the run's HOME (or the policy's cache directory, to keep it).
  const dir = mkdtempSync(join(tmpdir(), "mcpwarden-memory-"));
  try {
    const requests = [
      ["tools/list"],
      ["tools/call", { name: "create_entities", arguments: { entities: [{ name: "Ada", entityType: "person", observations: ["wrote the first program"] }] } }],
      ["tools/call", { name: "read_graph", arguments: {} }],
    ];
    await same(memory, requests, { MEMORY_FILE_PATH: join(dir, "memory.jsonl") },
      { MEMORY_FILE_PATH: join(stateDir, "sandbox/home/memory.jsonl") });
    const r = await session(direct(memory), requests.slice(2), { MEMORY_FILE_PATH: join(dir, "memory.jsonl") });
    assert.ok(r.lines[1].includes("wrote the first program"), "the direct run kept what it wrote");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("server-sequential-thinking: the same bytes directly and through mcpwarden", async () => {
  await same(thinking, [
    ["tools/list"],
    ["tools/call", { name: "sequentialthinking", arguments: { thought: "one step", nextThoughtNeeded: false, thoughtNumber: 1, totalThoughts: 1 } }],
  ], { DISABLE_THOUGHT_LOGGING: "true" });
});

test("a tool filter removes the tool and keeps the server's bytes and key order", async () => {
  const deny = policy("servers-filter", '  tools: { deny: ["get-env", "gzip-*"] }');
  const d = await session(direct(everything), [["tools/list"]]);
  const t = await session(through(deny, everything), [["tools/list"]]);
  const expected = JSON.parse(d.lines[1]);
  const before = expected.result.tools.length;
  expected.result.tools = expected.result.tools.filter((x) => x.name !== "get-env" && !x.name.startsWith("gzip-"));
  assert.equal(expected.result.tools.length, before - 2);
  // The server writes compact JSON in its own key order (JSON.stringify keeps it): so must we.
  assert.equal(t.lines[1], JSON.stringify(expected));
});

test("truncation bounds structuredContent too and says so", async () => {
  const small = policy("servers-small", "  max_content_chars: 10");
  const r = await session(through(small, everything), [
    ["tools/call", { name: "get-structured-content", arguments: { location: "Chicago" } }]]);
  const result = JSON.parse(r.lines[1]).result;
  assert.equal(result.structuredContent.conditions, "Light rain");
  assert.equal(result._meta["mcpwarden/structured_truncated"], true);
  assert.equal(result._meta["mcpwarden/truncated"], true);
  assert.equal(result._meta["mcpwarden/max_content_chars"], 10);
  assert.ok(result.content[0].text.includes("[mcpwarden: output truncated to 10 of"), result.content[0].text);
});

// The SDK client with an elicitation handler that takes `delay` ms.
async function elicitingClient(pol, delay, onSignal) {
  const transport = new StdioClientTransport({ command: warden, args: through(pol, everything)[1], stderr: "pipe" });
  let stderr = "";
  transport.stderr.on("data", (d) => { stderr += d; });
  const client = new Client({ name: "elicit", version: "1" }, { capabilities: { elicitation: {} } });
  client.setRequestHandler(ElicitRequestSchema, async (_req, extra) => {
    onSignal?.(extra.signal);
    await new Promise((resolve) => {
      const t = setTimeout(resolve, delay);
      extra.signal.addEventListener("abort", () => { clearTimeout(t); resolve(); });
    });
    return { action: "accept", content: { name: "Ada", check: true, email: "ada@example.com" } };
  });
  await client.connect(transport);
  return { client, stderr: () => stderr };
}

test("time the user spends answering an elicitation is not charged to the call", async () => {
  const pol = policy("servers-elicit", "  call_timeout: 2s");
  const { client, stderr } = await elicitingClient(pol, 4000);
  try {
    const started = Date.now();
    const r = await client.callTool({ name: "trigger-elicitation-request", arguments: {} }, undefined, { timeout: 30000 });
    assert.ok(Date.now() - started >= 4000);
    assert.ok(JSON.stringify(r).includes("Ada"), JSON.stringify(r));
  } catch (e) {
    assert.fail(`${e}\n${stderr()}`);
  } finally {
    await client.close();
  }
});

test("a server stuck on a refused registry fails within seconds, naming it", async () => {
  // npx fetching a package under a policy without the registry's rule: npm would retry for
  // over a minute; the client hears why within a few seconds. (Nothing leaves the machine:
  // mcpwarden's resolver refuses the name.)
  const pol = policy("servers-no-registry", "  call_timeout: 60s");
  const transport = new StdioClientTransport({
    command: warden, args: ["run", "--policy", pol, "--state-dir", stateDir, "npx", "-y", "@modelcontextprotocol/server-memory"],
    stderr: "pipe" });
  let stderr = "";
  transport.stderr.on("data", (d) => { stderr += d; });
  const client = new Client({ name: "npx", version: "1" });
  const started = Date.now();
  try {
    await client.connect(transport, { timeout: 30000 });
    assert.fail("initialize was expected to fail");
  } catch (e) {
    assert.ok(e instanceof McpError, `${e}\n${stderr}`);
    assert.equal(e.data.kind, "egress_denied");
    assert.ok(e.message.includes("registry.npmjs.org"), e.message);
    assert.ok(Date.now() - started < 15000, `took ${Date.now() - started} ms`);
  } finally {
    await client.close();
  }
  assert.ok(stderr.includes("the policy refused: registry.npmjs.org"), stderr);
});
