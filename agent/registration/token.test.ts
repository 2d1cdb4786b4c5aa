import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveBootstrapToken, validateToken } from "./token.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-tok-"));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

const base = (file: string, env: NodeJS.ProcessEnv = {}) => ({
  file,
  envName: "PLEXD_BOOTSTRAP_TOKEN",
  env,
  metadata: { enabled: false, path: "/plexd/bootstrap-token", timeoutMs: 500 },
});

describe("bootstrap token sources", () => {
  it("prefers the file over the environment, trimming whitespace", async () => {
    const file = join(dir, "token");
    await writeFile(file, "  file-token\n");
    expect(await resolveBootstrapToken(base(file, { PLEXD_BOOTSTRAP_TOKEN: "env-token" }))).toEqual({ token: "file-token", source: "file", file });
  });

  it("falls back to the named environment variable, then to nothing", async () => {
    const file = join(dir, "absent");
    expect(await resolveBootstrapToken(base(file, { PLEXD_BOOTSTRAP_TOKEN: "env-token" }))).toEqual({ token: "env-token", source: "env" });
    expect(await resolveBootstrapToken(base(file, {}))).toBeUndefined();
  });

  it("asks the metadata service last, only when enabled", async () => {
    const server = http.createServer((req, res) => {
      if (req.url === "/plexd/bootstrap-token") res.end("meta-token\n");
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as AddressInfo).port;
      const opts = { ...base(join(dir, "absent")), metadata: { enabled: true, path: "/plexd/bootstrap-token", timeoutMs: 1000, baseUrl: `http://127.0.0.1:${port}` } };
      expect(await resolveBootstrapToken(opts)).toEqual({ token: "meta-token", source: "metadata" });
    } finally {
      server.close();
    }
  });

  it("rejects tokens outside 1..512 printable ASCII, naming the source", () => {
    expect(() => validateToken("x".repeat(513), "env")).toThrow(/from env must be 1-512 printable ASCII/);
    expect(() => validateToken("tab\there", "file")).toThrow(/from file/);
    expect(validateToken(" ok ", "file")).toBe("ok");
  });
});
