import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, makeTempDir, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { nodeId } from "./lib/mesh.js";
import { createNode, type PlexdNode } from "./lib/node.js";
import { buildRelease, type BuiltRelease } from "./lib/release.js";

// service.upgrade end to end (docs/actions.md "Upgrades"): mockcp serves a release built by
// `npm run release`; the agent downloads it, checks its SHA-256, and privhelper installs it
// into actions.upgrade_root (a temp directory standing in for /). These machines have no
// systemd, so the restart that would follow is refused: status error, the release installed.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let node: PlexdNode;
let id: string;
let release: BuiltRelease;
let tarball: Buffer;
let upgradeRoot: string;
const arch = process.arch === "x64" ? "amd64" : process.arch;
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

beforeAll(async () => {
  release = await buildRelease();
  tarball = readFileSync(join(release.dir, release.tarball));
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["upg"] });
  cp = await startCpOnHub(topo);
  const { token } = await cp.client.createToken();
  upgradeRoot = makeTempDir("upgrade-root", { mode: 0o755 });
  node = createNode({ name: "upg", ns: topo.node("upg").ns, api: `https://${topo.hub.ip}:${cpPort}`, caFile: cp.caFile, users, token, config: { actions: { upgrade_root: upgradeRoot } } });
  await node.startPrivhelper();
  await node.startAgent().waitForLine(/"msg":"event stream connected"/, 60_000);
  id = nodeId(node);
}, 300_000);

async function upgrade(parameters: Record<string, string>) {
  const { execution_id } = await cp.client.pushAction(id, { action: "service.upgrade", parameters, timeout: "5m" });
  const rec = await cp.client.waitForResult(id, execution_id, { timeoutMs: 120_000 });
  expect(rec.acks.map((a) => a.body)).toEqual([{ execution_id, status: "accepted", reason: "" }]);
  return rec.result!.body as { status: string; exit_code: number; stdout: string; stderr: string };
}

/** Every path under `dir` with its kind, mode and owner: what "nothing changed" compares. */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .sort()
    .map((rel) => {
      const s = lstatSync(join(dir, rel));
      return `${rel} ${s.mode.toString(8)} ${s.uid}:${s.gid} ${s.size} ${s.mtimeMs}`;
    });
}

describe("service.upgrade", () => {
  it("is announced with its two required parameters", async () => {
    const { capabilities } = await cp.client.capabilities(id);
    const up = (capabilities as { builtin_actions: { name: string; parameters: { name: string; required: boolean }[] }[] }).builtin_actions.find((b) => b.name === "service.upgrade");
    expect(up?.parameters.map((p) => [p.name, p.required])).toEqual([["version", true], ["checksum", true]]);
  });

  it("an artifact that does not match the request's checksum is discarded: status error, nothing installed", async () => {
    // The control plane serves other bytes than the operator approved (a tampered upload).
    const tampered = Buffer.from(tarball);
    tampered[tampered.length >> 1] = tampered[tampered.length >> 1]! ^ 0x01;
    await cp.client.uploadArtifact(release.version, "linux", arch, tampered);
    const r = await upgrade({ version: release.version, checksum: `sha256:${sha256(tarball)}` });
    expect(r).toMatchObject({ status: "error", exit_code: -1, stdout: "" });
    expect(r.stderr).toContain(`checksum mismatch: the downloaded artifact is sha256:${sha256(tampered)}, the request asked for sha256:${sha256(tarball)}; download discarded, nothing installed`);
    expect(tree(upgradeRoot)).toEqual([]);
    expect(readdirSync(join(node.dataDir, "upgrade"))).toEqual([]);
    expect((await cp.client.artifacts()).find((a) => a.version === release.version)?.downloads).toBe(1);
  });

  it("a good artifact is installed in the release layout, every file as its SHA256SUMS says; the restart is refused here", async () => {
    const info = await cp.client.uploadArtifact(release.version, "linux", arch, tarball);
    const r = await upgrade({ version: release.version, checksum: info.checksum });
    const lib = join(upgradeRoot, "usr/local/lib/plexd");
    expect(r).toMatchObject({ status: "error", exit_code: -1 });
    expect(JSON.parse(r.stdout)).toEqual({ from: release.version, to: release.version, checksum: info.checksum });
    expect(r.stderr).toContain(`plexd ${release.version} is installed in ${lib}, but it cannot be started from here: systemd is not the init system`);

    const sums = readFileSync(join(release.unpacked, "lib/plexd/SHA256SUMS"), "utf8").trim().split("\n");
    expect(sums.length).toBeGreaterThan(10);
    for (const line of sums) {
      const [sum, rel] = line.split(/ {2}/) as [string, string];
      const p = join(lib, rel);
      expect(sha256(readFileSync(p)), rel).toBe(sum);
      expect(lstatSync(p)).toMatchObject({ uid: 0, gid: 0 });
      expect(lstatSync(p).mode & 0o022, rel).toBe(0);
    }
    expect(readFileSync(join(lib, "SHA256SUMS"), "utf8")).toBe(readFileSync(join(release.unpacked, "lib/plexd/SHA256SUMS"), "utf8"));
    for (const e of ["plexd", "plexd-agent", "plexd-privhelper", "plexd-mockcp"]) expect(readlinkSync(join(upgradeRoot, "usr/local/bin", e))).toBe(`../lib/plexd/${e}.js`);
    for (const u of ["plexd.service", "plexd-privhelper.service"]) expect(readFileSync(join(upgradeRoot, "etc/systemd/system", u))).toEqual(readFileSync(join(lib, "systemd", u)));
    // Only the release: no configuration or state under the root, and no download left behind.
    expect(existsSync(join(upgradeRoot, "etc/plexd"))).toBe(false);
    expect(existsSync(join(upgradeRoot, "var"))).toBe(false);
    expect(readdirSync(join(node.dataDir, "upgrade"))).toEqual([]);
    expect(node.agent!.exited).toBe(false);

    // The same release again changes nothing on disk.
    const before = tree(upgradeRoot);
    expect((await upgrade({ version: release.version, checksum: info.checksum })).status).toBe("error");
    expect(tree(upgradeRoot)).toEqual(before);
  });

  it("an unknown version is an error naming the 404, bad parameters are refused at admission", async () => {
    const r = await upgrade({ version: "9.9.9", checksum: `sha256:${"0".repeat(64)}` });
    expect(r).toMatchObject({ status: "error", exit_code: -1 });
    expect(r.stderr).toContain(`GET /v1/artifacts/plexd/9.9.9/linux/${arch}: the control plane has no such artifact (404)`);
    const bad = await cp.client.pushAction(id, { action: "service.upgrade", parameters: { version: "../../etc", checksum: "md5:1" } });
    await expect.poll(async () => (await cp.client.execution(id, bad.execution_id)).acks.map((a) => (a.body as { reason: string }).reason), { timeout: 30_000 }).toEqual(["invalid_parameters"]);
  });
});
