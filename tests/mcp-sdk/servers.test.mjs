// Real servers from npm, each run directly and through `mcpwarden run`, compared: the same
// session gives the same bytes where mcpwarden changes nothing, and what it does change (a tool
// filter, truncation, deadlines around a server->client request, a refused network) is
// asserted. Run by the kernel test McpSdk.RealServersDirectAndThroughMcpwarden (as root), which
// sets MCPWARDEN_BIN and MCPWARDEN_STATE_DIR and checks that nothing is left behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
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
  // A request the process ends without answering fails with what it wrote on stderr.
  let ended;
  child.on("exit", (code, signal) => { ended = `${command} ended (${code ?? signal}) without answering:\n${stderr}`; });
  child.stdout.on("end", () => { for (const fail of failing.values()) fail(new Error(ended ?? `${command}: stdout closed\n${stderr}`)); });
  const failing = new Map();
  const send = (m) => child.stdin.write(JSON.stringify({ jsonrpc: "2.0", ...m }) + "\n");
  return {
    request(method, params = {}) {
      const id = next++;
      const answer = new Promise((resolve, reject) => {
        waiting.set(String(id), (line) => { failing.delete(String(id)); resolve(line); });
        failing.set(String(id), reject);
      });
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

// A tools/list line through a policy denying DENY: the direct line with that tool cut out, in
// the server's own bytes and key order (the server writes compact JSON, as JSON.stringify
// does, which is checked first so that the comparison is a byte comparison).
async function filtered(argv, directLine, deny, env = {}, sections = "") {
  assert.equal(JSON.stringify(JSON.parse(directLine)), directLine, "the server writes compact JSON");
  const pol = policy(`servers-deny-${deny}`, `  tools: { deny: ["${deny}"] }${sections}`);
  const t = await session(through(pol, argv, Object.entries(env).map(([k, v]) => `--env=${k}=${v}`)), [["tools/list"]]);
  const expected = JSON.parse(directLine);
  const before = expected.result.tools.length;
  expected.result.tools = expected.result.tools.filter((x) => x.name !== deny);
  assert.equal(expected.result.tools.length, before - 1, `the server has a tool ${deny}`);
  assert.equal(t.lines[1], JSON.stringify(expected));
}

// The same session directly and through mcpwarden: the same bytes. When the first request is
// tools/list and `deny` names a tool, a third session lists the tools through a filter.
async function same(argv, requests, env = {}, throughEnv = env, { pol = plain, deny } = {}) {
  const a = await session(direct(argv), requests, env);
  const b = await session(through(pol, argv, Object.entries(throughEnv).map(([k, v]) => `--env=${k}=${v}`)), requests);
  assert.deepEqual(b.lines, a.lines, "the same bytes through mcpwarden");
  assert.equal(b.code, 0, b.stderr);
  assert.ok(!b.stderr.includes("mcpwarden: warning"), b.stderr);
  if (deny) await filtered(argv, a.lines[1], deny, throughEnv);
  return { direct: a, through: b };
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

test("server-memory: the same bytes, and the shipped policy keeps its graph between runs", async () => {
  // server-memory writes next to its own script unless MEMORY_FILE_PATH says where; the shipped
  // policy sets it to ${XDG_CACHE_HOME}/memory.jsonl, the sandbox's persistent cache.
  const shipped = join(here, "../../policies/memory.yaml");
  const cache = join(stateDir, "cache/memory");
  const kept = () => (existsSync(cache) ? readdirSync(cache) : [])
    .map((uid) => join(cache, uid, "memory.jsonl")).filter((f) => existsSync(f));
  const dir = mkdtempSync(join(tmpdir(), "mcpwarden-memory-"));
  const env = { MEMORY_FILE_PATH: join(dir, "memory.jsonl") };
  for (const f of kept()) rmSync(f);
  try {
    await same(memory, [
      ["tools/list"],
      ["tools/call", { name: "create_entities", arguments: { entities: [
        { name: "Ada", entityType: "person", observations: ["wrote the first program"] },
        { name: "Analytical Engine", entityType: "machine", observations: ["never finished"] }] } }],
      ["tools/call", { name: "create_relations", arguments: { relations: [
        { from: "Ada", to: "Analytical Engine", relationType: "programmed" }] } }],
    ], env, {}, { pol: shipped, deny: "delete_entities" });
    // A second run of each reads back what the first one wrote: through mcpwarden from the
    // cache, which outlives the sandbox.
    const r = await same(memory, [
      ["tools/call", { name: "read_graph", arguments: {} }],
      ["tools/call", { name: "search_nodes", arguments: { query: "Ada" } }],
    ], env, {}, { pol: shipped });
    assert.ok(r.through.lines[1].includes("wrote the first program"), r.through.lines[1]);
    assert.ok(r.through.lines[1].includes("programmed"), r.through.lines[1]);
    const files = kept();
    assert.equal(files.length, 1, `one store under ${cache}`);
    assert.ok(readFileSync(files[0], "utf8").includes("Analytical Engine"));
    assert.notEqual(statSync(files[0]).uid, 0, "written by the sandbox's own user");
  } finally {
    rmSync(dir, { recursive: true, force: true });
    for (const f of kept()) rmSync(f);
  }
});

test("server-sequential-thinking: the same bytes directly and through mcpwarden", async () => {
  const step = (n, more, extra = {}) => ["tools/call", { name: "sequentialthinking", arguments: {
    thought: `step ${n}: ${"ü".repeat(n)}`, nextThoughtNeeded: more, thoughtNumber: n, totalThoughts: 3, ...extra } }];
  await same(thinking, [
    ["tools/list"],
    step(1, true),
    step(2, true, { isRevision: true, revisesThought: 1 }),
    step(3, true, { branchFromThought: 2, branchId: "other" }),
    step(4, false, { needsMoreThoughts: true }),
  ], { DISABLE_THOUGHT_LOGGING: "true" }, undefined, { deny: "sequentialthinking" });
});

// server-filesystem given one host directory under /home, where mcpwarden's filesystem view
// hides everything else: in the session it sees that directory (the host's own) and nothing
// else of /home, and the same bytes as directly where mcpwarden changes nothing.
test("server-filesystem: one directory given through filesystem.read_write, the same bytes", async () => {
  const top = mkdtempSync("/home/mcpwarden-fs-test-");
  const project = join(top, "project");
  const secret = join(top, "secret.txt");
  // The same tree before each session (the sandbox's uid is not the owner: the tree is open).
  const fresh = () => {
    rmSync(project, { recursive: true, force: true });
    mkdirSync(join(project, "sub"), { recursive: true });
    writeFileSync(join(project, "a.txt"), "first line\nsecond line, ünïcödé\n");
    writeFileSync(join(project, "sub/b.md"), "# b\n");
    writeFileSync(join(project, "large.txt"), "z".repeat(20001));
    for (const p of [project, join(project, "sub")]) chmodSync(p, 0o777);
  };
  chmodSync(top, 0o755);
  writeFileSync(secret, "not for the server\n");
  const fs = policy("servers-fs", `  call_timeout: 60s\nfilesystem:\n  read_write: [${project}]`);
  const server = (dirs) => [process.execPath, pkg("server-filesystem"), ...dirs];
  const requests = [
    ["tools/list"],
    ["tools/call", { name: "list_allowed_directories", arguments: {} }],
    ["tools/call", { name: "read_text_file", arguments: { path: join(project, "a.txt") } }],
    ["tools/call", { name: "read_text_file", arguments: { path: join(project, "a.txt"), head: 1 } }],
    ["tools/call", { name: "write_file", arguments: { path: join(project, "new.txt"), content: "written ✓\n" } }],
    ["tools/call", { name: "read_text_file", arguments: { path: join(project, "new.txt") } }],
    ["tools/call", { name: "list_directory", arguments: { path: project } }],
    ["tools/call", { name: "directory_tree", arguments: { path: project } }],
    ["tools/call", { name: "read_text_file", arguments: { path: join(project, "large.txt") } }],
    ["tools/call", { name: "read_text_file", arguments: { path: secret } }],
  ];
  const compare = async (dirs, reqs, more) => {
    fresh();
    const a = await session(direct(server(dirs)), reqs);
    const written = existsSync(join(project, "new.txt")) && readFileSync(join(project, "new.txt"), "utf8");
    fresh();
    const b = await session(through(fs, server(dirs)), reqs);
    assert.equal(b.code, 0, b.stderr);
    assert.ok(!b.stderr.includes("mcpwarden: warning"), b.stderr);
    return { a, b, written, writtenThrough: existsSync(join(project, "new.txt")) && readFileSync(join(project, "new.txt"), "utf8") };
  };
  try {
    const { a, b, written, writtenThrough } = await compare([project], requests);
    assert.deepEqual(b.lines, a.lines, "the same bytes through mcpwarden");
    assert.equal(written, "written ✓\n");
    assert.equal(writtenThrough, "written ✓\n", "the write reached the host's directory");
    assert.ok(a.lines[2].includes(project), a.lines[2]);
    assert.ok(a.lines.at(-1).includes("outside allowed directories"), a.lines.at(-1));
    await filtered(server([project]), a.lines[1], "move_file", {}, `\nfilesystem:\n  read_write: [${project}]`);

    // Given /home as well, the server itself would read anything there: directly it does;
    // through mcpwarden /home holds only the way to the project.
    const home = await compare([project, "/home"], [
      ["tools/call", { name: "read_text_file", arguments: { path: secret } }],
      ["tools/call", { name: "list_directory", arguments: { path: "/home" } }],
      ["tools/call", { name: "list_directory", arguments: { path: top } }],
    ]);
    const text = (line) => JSON.parse(line).result.content.map((c) => c.text).join("");
    assert.equal(text(home.a.lines[1]), "not for the server\n");
    assert.ok(!home.b.lines[1].includes("not for the server"), home.b.lines[1]);
    assert.equal(JSON.parse(home.b.lines[1]).result.isError, true, home.b.lines[1]);
    assert.ok(text(home.b.lines[1]).includes("ENOENT"), home.b.lines[1]);
    assert.equal(text(home.b.lines[2]), `[DIR] ${top.slice("/home/".length)}`);
    assert.equal(text(home.b.lines[3]), "[DIR] project");
    assert.ok(text(home.a.lines[3]).includes("[FILE] secret.txt"), home.a.lines[3]);

    // A large file under a small max_content_chars: content and structuredContent both bounded.
    const small = policy("servers-fs-small", `  max_content_chars: 1000\nfilesystem:\n  read_write: [${project}]`);
    fresh();
    const big = await session(through(small, server([project])), [
      ["tools/call", { name: "read_text_file", arguments: { path: join(project, "large.txt") } }]]);
    const whole = JSON.parse(a.lines[9]).result;
    assert.equal(whole.structuredContent.content.length, 20001, "directly: all of it, twice");
    assert.ok(big.lines[1].length < 2 * 1000 + 1000, `${big.lines[1].length} bytes`);
    const cut = JSON.parse(big.lines[1]).result;
    assert.equal(cut.structuredContent.content, "z".repeat(1000));
    assert.ok(cut.content[0].text.startsWith("z".repeat(1000) + "\n[mcpwarden: output truncated to 1000 of 20001 characters]"),
      cut.content[0].text.slice(990));
    assert.equal(cut._meta["mcpwarden/truncated"], true);
    assert.equal(cut._meta["mcpwarden/structured_truncated"], true);
    assert.equal(cut._meta["mcpwarden/total_structured_chars"], 20001);
  } finally {
    rmSync(top, { recursive: true, force: true });
  }
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
