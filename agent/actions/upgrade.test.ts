import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { releaseArch, releaseName } from "../../proto/lib/install/name.js";
import { createCpClient } from "../controlplane/http.js";
import type { PrivClient } from "../privclient/client.js";
import { artifactChanged, installRelease } from "./upgrade.js";

// The download half of service.upgrade against a real HTTP server: the bytes reach privhelper
// only with the checksum the request named, and no download is ever left in data_dir.

const good = Buffer.from("a release tarball, or so it says\n".repeat(5000));
const sum = `sha256:${createHash("sha256").update(good).digest("hex")}`;
const arch = releaseArch()!;
let server: http.Server;
let base: string;
const seen: { path: string; auth: string | undefined }[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push({ path: req.url ?? "", auth: req.headers.authorization });
    if (req.url === `/v1/artifacts/plexd/1.5.0/linux/${arch}`) res.writeHead(200, { "content-type": "application/octet-stream" }).end(good);
    else res.writeHead(404).end("{}");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function deps() {
  const dataDir = mkdtempSync(join(tmpdir(), "plexd-upgrade-agent-"));
  dirs.push(dataDir);
  const installs: { version: string; checksum: string; bytes: Buffer }[] = [];
  const priv = {
    installUpgrade: async (r: { version: string; checksum: string }) => {
      // What privhelper would open: the download, complete, under its derived name.
      installs.push({ ...r, bytes: readFileSync(join(dataDir, "upgrade", `${releaseName(r.version, arch)}.tar.gz`)) });
      return { libDir: "/usr/local/lib/plexd", changes: 7 };
    },
  } as unknown as PrivClient;
  const cp = createCpClient({ baseUrl: base, connectTimeoutMs: 2000, requestTimeoutMs: 5000 });
  return { d: { cp, priv, dataDir, connectTimeoutMs: 2000, identity: () => ({ nodeId: "n1", token: "tok" }) }, installs, dataDir };
}

describe("service.upgrade download", () => {
  it("downloads with the identity token, hands the verified file to privhelper, then removes it", async () => {
    const { d, installs, dataDir } = deps();
    await expect(installRelease(d, "1.5.0", sum, AbortSignal.timeout(5000))).resolves.toEqual({ libDir: "/usr/local/lib/plexd", changes: 7 });
    expect(installs).toEqual([{ version: "1.5.0", checksum: sum, bytes: good }]);
    expect(seen.at(-1)).toEqual({ path: `/v1/artifacts/plexd/1.5.0/linux/${arch}`, auth: "Bearer tok" });
    expect(readdirSync(join(dataDir, "upgrade"))).toEqual([]);
  });

  it("a checksum mismatch discards the download and never reaches privhelper", async () => {
    const { d, installs, dataDir } = deps();
    const other = `sha256:${"0".repeat(64)}`;
    await expect(installRelease(d, "1.5.0", other, AbortSignal.timeout(5000))).rejects.toMatchObject({
      message: `checksum mismatch: the downloaded artifact is ${sum}, the request asked for ${other}; download discarded, nothing installed`,
    });
    expect(installs).toEqual([]);
    expect(readdirSync(join(dataDir, "upgrade"))).toEqual([]);
  });

  it("an unknown version is a clear error and leaves nothing", async () => {
    const { d, installs, dataDir } = deps();
    await expect(installRelease(d, "9.9.9", sum, AbortSignal.timeout(5000))).rejects.toThrow(`GET /v1/artifacts/plexd/9.9.9/linux/${arch}: the control plane has no such artifact (404)`);
    expect(installs).toEqual([]);
    expect(existsSync(join(dataDir, "upgrade")) ? readdirSync(join(dataDir, "upgrade")) : []).toEqual([]);
  });
});

describe("after an install", () => {
  it("takes over and announces a changed artifact checksum, and stays quiet when it did not change", async () => {
    let checksum = "sha256:old";
    let announced = 0;
    const d = (hash: string) => ({ current: () => checksum, hash: async () => hash, set: (c: string) => (checksum = c), announce: () => void announced++ });
    expect(await artifactChanged(d("sha256:old"))).toBe(false);
    expect(announced).toBe(0);
    expect(await artifactChanged(d("sha256:new"))).toBe(true);
    expect([checksum, announced]).toEqual(["sha256:new", 1]);
    expect(await artifactChanged({ ...d("x"), hash: () => Promise.reject(new Error("gone")) })).toBe(false);
  });
});
