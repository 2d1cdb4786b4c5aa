// privhelper's caller check (docs/architecture.md#privhelper): SO_PEERCRED on every RPC, so that only root and
// the agent's user are served. A member of group plexd that is not the agent's user can
// reach the socket (0660 root:plexd) and must get PERMISSION_DENIED from every method of the
// service — iterated from the generated descriptor, so a new RPC is covered at once — with
// nothing applied and a log line naming the kernel-attested uid and pid. The callers are real
// processes of real users running an independent client (lib/priv-caller.ts).
import { chownSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { addNamespace, ensureSystemUsers, makeTempDir, RUN_PREFIX, spawnInNamespace, useHarness, type RunAs, type SystemUsers } from "./harness/vitest.js";
import type { LogLine } from "./lib/logs.js";
import { encodeRequest, methodByName, privMethods, PrivCaller, statusName, type CallOutcome } from "./lib/priv-caller.js";
import { bundleCaller, createPrivNode, type PrivNode } from "./lib/priv-node.js";
import { firewallSpec, meshSpec, newKey, overlappingMeshes, stunBinding } from "./lib/priv-specs.js";
import { liveFirewall, liveMesh, madeRoutes, meshText } from "./lib/priv-state.js";
import { ensureBuilt } from "./privhelper-util.js";

useHarness();

const PERMISSION_DENIED = 7;
const UNAVAILABLE = 14;

let users: SystemUsers;
let ns: string;
let node: PrivNode;
let callerScript: string;
let reqDir: string;
const iface = `plexd${RUN_PREFIX.slice(2)}c`;

interface Report {
  pid: number;
  uid: number;
  groups: number[];
  results: CallOutcome[];
}

/** Runs the bundled caller as `user` (root when undefined) and returns its report. */
async function callEvery(user: RunAs | undefined, socket: string): Promise<Report> {
  const p = spawnInNamespace({ name: `caller-${typeof user === "string" ? user : "root"}`, ...(user ? { user } : {}), cwd: "/", argv: ["node", callerScript, "every", socket, reqDir] });
  const exit = await p.waitForExit(120_000);
  if (exit.exitCode !== 0) throw new Error(`caller exited ${String(exit.exitCode)}: ${p.output()}`);
  const report = JSON.parse(p.stdout().trim().split("\n").at(-1)!) as Report;
  console.log(`[privhelper-callers] ${typeof user === "string" ? user : "root"} (uid ${report.uid}, pid ${report.pid}): ${report.results.map((r) => `${r.method} ${statusName(r.code)}`).join(", ")}`);
  return report;
}

async function callOnce(user: RunAs | undefined, socket: string, method: string): Promise<{ pid: number; code: number; details: string }> {
  const file = join(reqDir, "empty.bin");
  writeFileSync(file, new Uint8Array(), { mode: 0o640 });
  chownSync(file, 0, users.groups.plexd);
  const p = spawnInNamespace({ name: `once-${typeof user === "string" ? user : "root"}`, ...(user ? { user } : {}), cwd: "/", argv: ["node", callerScript, "once", socket, method, file, "10000"] });
  const exit = await p.waitForExit(60_000);
  if (exit.exitCode !== 0) throw new Error(`caller exited ${String(exit.exitCode)}: ${p.output()}`);
  return JSON.parse(p.stdout().trim().split("\n").at(-1)!) as { pid: number; code: number; details: string };
}

/** The methods for which privhelper logged no line naming this uid, pid and RPC (and, if given, outcome and level). */
function unlogged(log: LogLine[], who: { uid: number; pid: number }, want: { outcome?: string; level?: number } = {}): string[] {
  return privMethods
    .map((m) => m.name)
    .filter(
      (rpc) =>
        !log.some(
          (l) =>
            l.rpc === rpc &&
            typeof l.uid === "number" &&
            typeof l.pid === "number" &&
            l.uid === who.uid &&
            l.pid === who.pid &&
            (want.outcome === undefined || l.outcome === want.outcome) &&
            (want.level === undefined || l.level === want.level),
        ),
    );
}

const codes = (r: Report): [string, string][] => r.results.map((x) => [x.method, statusName(x.code)]);

function writeToken(): void {
  writeFileSync(node.tokenFile, "plexd-bootstrap-test-token\n", { mode: 0o640 });
  chownSync(node.tokenFile, 0, users.groups.plexd);
}

/** What privhelper manages in the namespace, as one comparable object. */
async function snapshot() {
  const mesh = await liveMesh(ns, iface);
  return {
    mesh: mesh ? meshText(mesh.peers) : "(no device)",
    firewall: (await liveFirewall(ns)) ?? "(no table)",
    routes: (await madeRoutes(ns)).map((r) => `${r.dst} ${r.dev}`).sort(),
    token: existsSync(node.tokenFile),
  };
}

beforeAll(async () => {
  await ensureBuilt();
  users = await ensureSystemUsers();
  ns = await addNamespace("pcall");
  node = createPrivNode({ name: "callers", ns, iface, logLevel: "debug" });
  callerScript = await bundleCaller();
  // Requests hold a private key: readable by group plexd (the callers), not by the world.
  reqDir = makeTempDir("priv-reqs", { mode: 0o750, owner: { uid: 0, gid: users.groups.plexd } });
  const pair = overlappingMeshes(2, 1, 0);
  const requests: Record<string, Record<string, unknown>> = {
    ApplyMesh: { spec: meshSpec(iface, pair.privateKey, pair.new) },
    ReadMesh: { interface: iface },
    ApplyFirewall: { spec: firewallSpec(iface, 5, 1) },
    ApplyRoutes: { spec: { routes: [{ destination: "10.77.0.0/24", interface: iface }] } },
    Teardown: { purge: true },
    StunProbe: { ip: "127.0.0.1", port: 3478, request: stunBinding(), timeoutMs: 300 },
  };
  for (const [name, req] of Object.entries(requests)) {
    // RPCs leave the proto until privhelper implements them: a request only for those it has.
    if (!privMethods.some((m) => m.name === name)) continue;
    const file = join(reqDir, `${name}.bin`);
    writeFileSync(file, encodeRequest(methodByName(name), req), { mode: 0o640 });
    chownSync(file, 0, users.groups.plexd);
  }
  mkdirSync(join(node.root, "hooks.d"), { mode: 0o755 });
  writeToken();
  await node.start();
}, 180_000);

/**
 * Something for refused calls to (not) change: a device and a firewall of root's. Made before
 * each test, because the tests of served callers call Teardown too.
 */
async function rootState(): Promise<void> {
  const root = new PrivCaller(node.socket);
  try {
    const setup = overlappingMeshes(1, 0, 0);
    const mesh = await root.call(methodByName("ApplyMesh"), { spec: meshSpec(iface, newKey(), setup.old) });
    const fw = await root.call(methodByName("ApplyFirewall"), { spec: firewallSpec(iface, 5, 0) });
    if (mesh.code !== 0 || fw.code !== 0) throw new Error(`setup failed: ApplyMesh ${statusName(mesh.code)} ${mesh.details}; ApplyFirewall ${statusName(fw.code)} ${fw.details}`);
  } finally {
    root.close();
  }
}

describe("privhelper caller check (SO_PEERCRED)", () => {
  beforeEach(rootState, 60_000);

  it("answers every RPC of a group member that is not the agent user with PERMISSION_DENIED, applies nothing, and logs its uid and pid", async () => {
    const before = await snapshot();
    expect(before.mesh).not.toBe("(no device)");
    const report = await callEvery("plexd-member", node.socket);
    // The caller really is who the test means: the member's uid, with group plexd.
    expect(report.uid).toBe(users.member.uid);
    expect(report.groups).toContain(users.groups.plexd);
    expect(codes(report)).toEqual(privMethods.map((m) => [m.name, "PERMISSION_DENIED"]));
    expect(await snapshot()).toEqual(before);
    expect(unlogged(node.log(), { uid: users.member.uid, pid: report.pid }, { outcome: "permission_denied", level: 40 })).toEqual([]);
  });

  it.each([
    ["the agent user plexd", "plexd" as const],
    ["root", undefined],
  ])("serves every RPC of %s and logs its uid and pid", async (_who, user) => {
    writeToken();
    const report = await callEvery(user, node.socket);
    const uid = user ? users.plexd.uid : 0;
    expect(report.uid).toBe(uid);
    expect(codes(report).filter(([, c]) => c === "PERMISSION_DENIED")).toEqual([]);
    const byName = new Map(report.results.map((r) => [r.method, r]));
    // Served for real, not merely refused differently: the reads answer and the token is gone.
    expect(byName.get("GetInfo")?.code).toBe(0);
    expect(byName.get("ReadMesh")?.code).toBe(0);
    expect(byName.get("RemoveBootstrapToken")?.code).toBe(0);
    expect(existsSync(node.tokenFile)).toBe(false);
    expect(unlogged(node.log(), { uid, pid: report.pid })).toEqual([]);
  });

  it("does not let a process outside group plexd connect at all (EACCES), and logs nothing of it", async () => {
    const probe = spawnInNamespace({
      name: "outsider-connect",
      user: "plexd-outsider",
      cwd: "/",
      argv: ["node", "-e", `const s = require("node:net").connect(process.argv[1]); s.on("connect", () => { console.log("CONNECTED"); s.destroy(); }); s.on("error", (e) => console.log(e.code));`, node.socket],
    });
    await probe.waitForExit(30_000);
    expect(probe.stdout().trim()).toBe("EACCES");
    const report = await callEvery("plexd-outsider", node.socket);
    expect(report.uid).toBe(users.outsider.uid);
    expect(codes(report)).toEqual(privMethods.map((m) => [m.name, statusName(UNAVAILABLE)]));
    expect(node.log().filter((l) => l.pid === report.pid)).toEqual([]);
  });

  it("--agent-user names the one unprivileged user it serves", async () => {
    const other = createPrivNode({ name: "callers-au", ns, iface, logLevel: "debug" });
    await other.start(["--agent-user", "plexd-member"]);
    const member = await callOnce("plexd-member", other.socket, "GetInfo");
    const plexd = await callOnce("plexd", other.socket, "GetInfo");
    const root = await callOnce(undefined, other.socket, "GetInfo");
    expect([statusName(member.code), statusName(plexd.code), statusName(root.code)]).toEqual(["OK", statusName(PERMISSION_DENIED), "OK"]);
    const refused = other.log().find((l) => l.rpc === "GetInfo" && l.pid === plexd.pid);
    expect(refused).toMatchObject({ uid: users.plexd.uid, pid: plexd.pid, outcome: "permission_denied", level: 40 });
  });
});
