// Every policy shipped in policies/ with a real server and the official SDK client: the
// policy's isolation, limits, environment and MCP settings as shipped, only its `command:` pin
// pointed at @modelcontextprotocol/server-everything (the servers the shipped pins name need
// their services' accounts). A session lists the tools and calls two of them, then ends as a
// client ends it. Run by the kernel test McpSdk.ShippedPoliciesServeARealServer (as root), which
// sets MCPWARDEN_BIN and MCPWARDEN_STATE_DIR and checks that nothing is left behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const here = dirname(fileURLToPath(import.meta.url));
const warden = process.env.MCPWARDEN_BIN;
const stateDir = process.env.MCPWARDEN_STATE_DIR;
assert.ok(warden && stateDir, "MCPWARDEN_BIN and MCPWARDEN_STATE_DIR must be set");
const shippedDir = join(here, "../../policies");
const server = [process.execPath, join(here, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"), "stdio"];

const shipped = readdirSync(shippedDir).filter((f) => f.endsWith(".yaml")).sort();

test("every shipped policy is tried", () => {
  assert.ok(shipped.length >= 10, `policies found in ${shippedDir}: ${shipped.join(", ")}`);
});

for (const file of shipped) {
  test(`${file}: server-everything through the SDK client`, async () => {
    const text = readFileSync(join(shippedDir, file), "utf8");
    // The pin, when there is one, names this server instead; everything else as shipped.
    const pin = `command: ${JSON.stringify(server)}`;
    const copy = /^command:.*$/m.test(text) ? text.replace(/^command:.*$/m, pin) : text;
    const path = join(stateDir, `shipped-${file}`);
    writeFileSync(path, copy);

    const transport = new StdioClientTransport({
      command: warden,
      args: ["run", "--policy", path, "--state-dir", stateDir, ...server],
      stderr: "pipe",
    });
    let stderr = "";
    transport.stderr.on("data", (d) => { stderr += d; });
    const client = new Client({ name: "mcpwarden-shipped-test", version: "1" });
    try {
      await client.connect(transport);
      const names = (await client.listTools()).tools.map((t) => t.name);
      assert.ok(names.includes("echo"), `tools: ${names.join(", ")}`);
      const echo = await client.callTool({ name: "echo", arguments: { message: `through ${file}` } });
      assert.equal(echo.isError ?? false, false, JSON.stringify(echo));
      assert.ok(JSON.stringify(echo.content).includes(`through ${file}`), JSON.stringify(echo));
      const sum = await client.callTool({ name: "get-sum", arguments: { a: 40, b: 2 } });
      assert.ok(JSON.stringify(sum.content).includes("42"), JSON.stringify(sum));
    } catch (e) {
      e.message += `\nmcpwarden stderr:\n${stderr}`;
      throw e;
    } finally {
      await client.close();
    }
    assert.ok(!/mcpwarden: (warning|error)/.test(stderr), stderr);
  });
}
