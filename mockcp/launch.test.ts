import { randomBytes } from "node:crypto";
import { mkdir, rm, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MockcpClient } from "./control/client.js";
import { startMockcp, type LaunchedMockcp } from "./launch.js";

// The bundle goes under node_modules/.cache so its external packages resolve from the
// repo's node_modules, and the test does not depend on a prior `npm run build`.
const root = fileURLToPath(new URL("..", import.meta.url));
const outDir = join(root, "node_modules", ".cache", "plexd-mockcp-test");
const bin = join(outDir, `plexd-mockcp-${process.pid}.js`);

beforeAll(async () => {
  await mkdir(outDir, { recursive: true });
  await build({
    entryPoints: [join(root, "mockcp", "main.ts")],
    outfile: bin,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    logLevel: "warning",
    banner: { js: 'import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);' },
  });
}, 60_000);

afterAll(async () => {
  await rm(bin, { force: true });
  // Only removes the directory when no parallel run still has its bundle there.
  await rmdir(outDir).catch(() => undefined);
});

describe("startMockcp", () => {
  let cp: LaunchedMockcp | undefined;
  afterAll(async () => {
    await cp?.stop();
  });

  it("spawns the bundle, parses the listening line and stops on SIGTERM", async () => {
    cp = await startMockcp({ bin, listen: ["http://127.0.0.1:0", "https://127.0.0.1:0"], stderr: "ignore", signingSeed: "00".repeat(32) });
    expect(cp.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(cp.urls.some((u) => u.startsWith("https://127.0.0.1:"))).toBe(true);
    expect(cp.urls.some((u) => u.startsWith("unix:"))).toBe(true);
    expect((await stat(cp.caFile)).isFile()).toBe(true);
    // RFC 8032 test 1 (seed of zeros).
    expect(Buffer.from(cp.signingPublicKey, "base64").toString("hex")).toBe("3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29");
    await cp.client.ping();
    const { token } = await cp.client.createToken();
    const tcp = new MockcpClient({ baseUrl: cp.url });
    const r = await tcp.request("POST", "/v1/register", { body: { token, public_key: randomBytes(32).toString("base64"), hostname: "h" } });
    expect(r.status).toBe(201);
    expect(await cp.client.listNodes()).toHaveLength(1);
    const stateDir = cp.stateDir;
    await cp.stop();
    const exit = await cp.exited;
    expect(exit.exitCode).toBe(0);
    // The temp state dir it created is gone after a clean stop.
    await expect(stat(stateDir)).rejects.toThrow();
    await expect(tcp.ping()).rejects.toThrow();
  });
});

describe("startMockcp in a network namespace", () => {
  const ns = `mcp-test-${randomBytes(3).toString("hex")}`;
  let cp: LaunchedMockcp | undefined;

  beforeAll(async () => {
    await execa("ip", ["netns", "add", ns]);
    await execa("ip", ["-n", ns, "link", "set", "lo", "up"]);
  });
  afterAll(async () => {
    await cp?.stop();
    await execa("ip", ["netns", "del", ns], { reject: false });
  });

  it("is reachable through its unix socket from the root namespace, not over TCP", async () => {
    cp = await startMockcp({ bin, netns: ns, listen: ["http://127.0.0.1:0"], stderr: "ignore" });
    await cp.client.ping();
    const { token } = await cp.client.createToken();
    // Inside the namespace the TCP listener answers...
    const inside = await execa("ip", ["netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", `${cp.url}/v1/ping`], { reject: false });
    expect(inside.stdout).toBe("200");
    // ...while the root namespace's loopback has nothing on that port.
    await expect(new MockcpClient({ baseUrl: cp.url }).ping()).rejects.toThrow();
    const reg = await execa(
      "ip",
      ["netns", "exec", ns, "curl", "-s", "-H", "content-type: application/json", "-d", JSON.stringify({ token, public_key: randomBytes(32).toString("base64"), hostname: "in-ns" }), `${cp.url}/v1/register`],
      { reject: false },
    );
    expect(JSON.parse(reg.stdout)).toHaveProperty("node_id");
    expect((await cp.client.listNodes()).map((n) => n.hostname)).toEqual(["in-ns"]);
  });
});
