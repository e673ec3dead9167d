// The official TypeScript SDK's clients, v1 (@modelcontextprotocol/sdk) and v2
// (@modelcontextprotocol/client), each run the same server-everything session directly and
// through `mcpwarden run` as a client configuration launches it: the results must be the same.
// Run by the kernel test McpSdk.ClientsV1AndV2DirectAndThroughMcpwarden (as root), which sets
// MCPWARDEN_BIN and MCPWARDEN_STATE_DIR and checks that nothing is left behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client as Client1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport as Stdio1 } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { Client as Client2 } from "@modelcontextprotocol/client";
import { StdioClientTransport as Stdio2 } from "@modelcontextprotocol/client/stdio";

const here = dirname(fileURLToPath(import.meta.url));
const warden = process.env.MCPWARDEN_BIN;
const stateDir = process.env.MCPWARDEN_STATE_DIR;
assert.ok(warden && stateDir, "MCPWARDEN_BIN and MCPWARDEN_STATE_DIR must be set");
const everything = [process.execPath,
  join(here, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"), "stdio"];

const policy = join(stateDir, "clients.yaml");
writeFileSync(policy, "name: clients\nmcp:\n  call_timeout: 60s\n");

const sdks = {
  v1: {
    Client: Client1, Stdio: Stdio1,
    onElicit: (c, handler) => c.setRequestHandler(ElicitRequestSchema, handler),
  },
  v2: {
    Client: Client2, Stdio: Stdio2,
    onElicit: (c, handler) => c.setRequestHandler("elicitation/create", handler),
  },
};

// One session: what the client library hands its caller for each step. `options` goes to the
// Client (v2's version negotiation).
async function session(sdk, [command, ...args], options = {}) {
  const { Client, Stdio, onElicit } = sdks[sdk];
  const transport = new Stdio({ command, args, stderr: "pipe" });
  let stderr = "";
  transport.stderr?.on("data", (d) => { stderr += d; });
  const client = new Client({ name: `compare-${sdk}`, version: "1" },
    { capabilities: { elicitation: {} }, ...options });
  onElicit(client, async () => ({ action: "accept", content: { name: "Ada", check: true, email: "ada@example.com" } }));
  const out = {};
  try {
    await client.connect(transport);
    out.server = client.getServerVersion();
    out.capabilities = client.getServerCapabilities();
    out.instructions = client.getInstructions();
    out.tools = await client.listTools();
    out.echo = await client.callTool({ name: "echo", arguments: { message: "héllo \u2028 \ud83d\ude00" } });
    out.sum = await client.callTool({ name: "get-sum", arguments: { a: 2, b: 3 } });
    out.structured = await client.callTool({ name: "get-structured-content", arguments: { location: "Chicago" } });
    out.annotated = await client.callTool({ name: "get-annotated-message", arguments: { messageType: "error", includeImage: true } });
    out.elicited = await client.callTool({ name: "trigger-elicitation-request", arguments: {} });
    out.prompts = await client.listPrompts();
    out.prompt = await client.getPrompt({ name: "args-prompt", arguments: { city: "Lyon", state: "Rhône" } });
    out.resources = await client.listResources();
    out.templates = await client.listResourceTemplates();
    out.resource = await client.readResource({ uri: "demo://resource/static/document/architecture.md" });
    out.completion = await client.complete({
      ref: { type: "ref/prompt", name: "completable-prompt" }, argument: { name: "department", value: "E" } });
    await client.ping();
  } catch (e) {
    throw new Error(`${sdk} session (${command} ${args.join(" ")}) failed: ${e}\n${stderr}`);
  } finally {
    await client.close();
  }
  return { out, stderr };
}

for (const sdk of Object.keys(sdks)) {
  test(`SDK ${sdk} client: the same results directly and through mcpwarden`, async () => {
    const started = Date.now();
    const d = await session(sdk, everything);
    const t0 = Date.now();
    const t = await session(sdk, [warden, "run", "--policy", policy, "--state-dir", stateDir, ...everything]);
    console.log(`# ${sdk}: direct ${t0 - started} ms, through mcpwarden ${Date.now() - t0} ms`);
    assert.ok(d.out.tools.tools.length > 10, JSON.stringify(d.out.tools).slice(0, 200));
    assert.ok(JSON.stringify(d.out.elicited).includes("Ada"), JSON.stringify(d.out.elicited));
    assert.deepEqual(t.out, d.out);
    assert.ok(!t.stderr.includes("mcpwarden: warning"), t.stderr);
  });
}

test("SDK v2 client with version negotiation (server/discover probe): the same results", async () => {
  // mode auto probes with server/discover on a sibling process first, then falls back to
  // initialize for this 2025-era server: through mcpwarden that is two sandboxes, one after
  // the other, and the same outcome.
  const options = { versionNegotiation: { mode: "auto", probe: { timeoutMs: 10000 } } };
  const d = await session("v2", everything, options);
  const t = await session("v2", [warden, "run", "--policy", policy, "--state-dir", stateDir, ...everything], options);
  assert.deepEqual(t.out, d.out);
});
