// privhelper never dies on a cancelled call (docs/architecture.md#privhelper) and a cancelled apply leaves its
// resource in the state before it or the state it asked for, never a mix. Hundreds of
// ApplyMesh, ApplyFirewall and StunProbe calls are cancelled at random points of their run —
// client cancel, deadline, or the calling process killed (SIGTERM/SIGKILL) — while the
// target alternates between two states A and B per resource; the kernel is checked with
// wg, ip and nft, and the same privhelper process must still answer at the end.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { addAddress, addNamespace, addVethPair, makeTempDir, RUN_PREFIX, spawnInNamespace, useHarness } from "./harness/vitest.js";
import { cancelByKill, cancelInProcess, type CancelOutcome, type CancelWay } from "./lib/priv-chaos.js";
import { encodeRequest, methodByName, PrivCaller, statusName } from "./lib/priv-caller.js";
import { bundleCaller, createPrivNode, keepPrivLog, type PrivNode } from "./lib/priv-node.js";
import { firewallSpec, meshSpec, overlappingMeshes, seededRandom, stunBinding } from "./lib/priv-specs.js";
import { expectedPeers, liveFirewall, liveMesh, madeRoutes, meshText, nftTables, routesVia } from "./lib/priv-state.js";
import { ensureBuilt } from "./privhelper-util.js";

useHarness();
afterEach((ctx) => {
  if (ctx.task.result?.state === "fail" && node) keepPrivLog(node, ctx.task.name);
});

const iface = `plexd${RUN_PREFIX.slice(2)}k`;
const peers = 300;
const rules = 2500;
/** Cancellations (calls that ended before completing) per resource, 520 in all: the firewall's take longest. */
const wanted = { mesh: 220, firewall: 120, stun: 180 };
/** Share of calls whose calling process is killed instead of cancelled in-process. */
const killShare = 0.12;
/** Every this many cancellations of a resource, its kernel state is checked. */
const checkEvery = 5;

let nsA: string;
let node: PrivNode;
let callerScript: string;
let reqDir: string;
let logDir: string;
const requests: Record<string, Uint8Array> = {};
const files: Record<string, string> = {};
const states: Record<"mesh" | "firewall", { A: string; B: string }> = { mesh: { A: "", B: "" }, firewall: { A: "", B: "" } };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const meshState = async (): Promise<string> => {
  const m = await liveMesh(nsA, iface);
  return `peers:\n${m ? meshText(m.peers) : "(no device)"}\nroutes:\n${await routesVia(nsA, iface)}`;
};
const firewallState = async (): Promise<string> => (await liveFirewall(nsA)) ?? "(no table)";
const stunLeft = async (): Promise<boolean> => (await nftTables(nsA)).includes("ip plexd_stun");

/** Polls until `read` gives state A or B (a cancelled apply may still be rolling back); returns which. */
async function settlesToAOrB(what: "mesh" | "firewall", read: () => Promise<string>): Promise<"A" | "B"> {
  const until = Date.now() + 20_000;
  let s = "";
  while (Date.now() < until) {
    s = await read();
    if (s === states[what].A) return "A";
    if (s === states[what].B) return "B";
    await sleep(200);
  }
  const lines = new Set(s.split("\n"));
  const share = (x: string) => x.split("\n").filter((l) => lines.has(l)).length;
  throw new Error(`${what} is neither state A nor state B after 20 s: ${lines.size} lines, ${share(states[what].A)} of A's ${states[what].A.split("\n").length}, ${share(states[what].B)} of B's ${states[what].B.split("\n").length}`);
}

async function noStunTableLeft(): Promise<void> {
  const until = Date.now() + 20_000;
  while (await stunLeft()) {
    if (Date.now() > until) throw new Error("table ip plexd_stun is still there 20 s after the probe was cancelled");
    await sleep(200);
  }
}

async function apply(caller: PrivCaller, method: string, key: string): Promise<number> {
  const t = performance.now();
  const r = await caller.call(methodByName(method), requests[key]!, { deadlineMs: 120_000 });
  const result = (r.response as { result?: { failedStep?: string } } | undefined)?.result;
  if (r.code !== 0 || (result?.failedStep ?? "") !== "") throw new Error(`${method} ${key}: ${statusName(r.code)} ${r.details} ${result?.failedStep ?? ""}`);
  return performance.now() - t;
}

beforeAll(async () => {
  await ensureBuilt();
  nsA = await addNamespace("pcxa");
  const nsS = await addNamespace("pcxs");
  await addVethPair(nsA, `${RUN_PREFIX}a`, nsS, `${RUN_PREFIX}s`);
  await addAddress(nsA, `${RUN_PREFIX}a`, "192.0.2.1/24");
  await addAddress(nsS, `${RUN_PREFIX}s`, "192.0.2.2/24");
  await addAddress(nsS, `${RUN_PREFIX}s`, "192.0.2.3/24");
  // Debian's stund: a real STUN server, only in the test's own namespace.
  const stund = spawnInNamespace({ ns: nsS, name: "stund", argv: ["stund", "-h", "192.0.2.2", "-a", "192.0.2.3", "-p", "3478"] });
  await sleep(300);
  if (stund.exited) throw new Error(`stund exited: ${stund.output()}`);

  node = createPrivNode({ name: "cancel", ns: nsA, iface });
  callerScript = await bundleCaller();
  reqDir = makeTempDir("priv-cancel-reqs", { mode: 0o700 });
  logDir = makeTempDir("priv-cancel-victims", { mode: 0o755 });
  const mesh = overlappingMeshes(peers, peers / 4, peers / 4);
  const put = (key: string, method: string, req: Record<string, unknown>) => {
    requests[key] = encodeRequest(methodByName(method), req);
    files[key] = join(reqDir, `${key}.bin`);
    writeFileSync(files[key], requests[key], { mode: 0o600 });
  };
  put("meshA", "ApplyMesh", { spec: meshSpec(iface, mesh.privateKey, mesh.old) });
  put("meshB", "ApplyMesh", { spec: meshSpec(iface, mesh.privateKey, mesh.new) });
  put("firewallA", "ApplyFirewall", { spec: firewallSpec(iface, rules, 0) });
  put("firewallB", "ApplyFirewall", { spec: firewallSpec(iface, rules, 1) });
  put("stun", "StunProbe", { ip: "192.0.2.2", port: 3478, request: stunBinding(), timeoutMs: 1000 });
  await node.start();

  // States A and B as the kernel shows them after an uncancelled apply.
  const caller = new PrivCaller(node.socket);
  try {
    for (const s of ["A", "B"] as const) {
      await apply(caller, "ApplyMesh", `mesh${s}`);
      await apply(caller, "ApplyFirewall", `firewall${s}`);
      states.mesh[s] = await meshState();
      states.firewall[s] = await firewallState();
    }
    // The snapshots are what the specs say, and A and B really differ.
    const m = await liveMesh(nsA, iface);
    expect(meshText(m!.peers)).toBe(meshText(expectedPeers(mesh.new)));
    expect((await madeRoutes(nsA)).length).toBe(peers);
    expect(states.mesh.A).not.toBe(states.mesh.B);
    expect(states.firewall.A).not.toBe(states.firewall.B);
    expect(states.firewall.A.split(" ").length).toBeGreaterThan(rules);
  } finally {
    caller.close();
  }
}, 180_000);

interface Resource {
  name: "mesh" | "firewall" | "stun";
  method: string;
  keys: [string, string];
  check: () => Promise<string>;
}

describe("privhelper under cancellation", () => {
  it(`survives ${wanted.mesh + wanted.firewall + wanted.stun} cancellations of ApplyMesh, ApplyFirewall and StunProbe at random points`, async () => {
    const rnd = seededRandom("privhelper-cancel");
    const pid = node.proc!.pid;
    const callers = [new PrivCaller(node.socket), new PrivCaller(node.socket, { ownConnection: true })];
    // Calibration: how long an uncancelled call takes now, so cancel points cover all of it.
    const span: Record<string, number> = {};
    span.mesh = Math.max(await apply(callers[0]!, "ApplyMesh", "meshA"), await apply(callers[0]!, "ApplyMesh", "meshB"));
    span.firewall = Math.max(await apply(callers[0]!, "ApplyFirewall", "firewallA"), await apply(callers[0]!, "ApplyFirewall", "firewallB"));
    const t = performance.now();
    const probe = await callers[0]!.call(methodByName("StunProbe"), requests.stun!);
    span.stun = performance.now() - t;
    expect(statusName(probe.code)).toBe("OK");
    expect((probe.response as { fromMeshPort: boolean }).fromMeshPort).toBe(true);
    console.log(`[privhelper-cancel] uncancelled: ApplyMesh ${peers} peers ${span.mesh!.toFixed(0)} ms, ApplyFirewall ${rules} rules ${span.firewall!.toFixed(0)} ms, StunProbe ${span.stun.toFixed(0)} ms`);

    const resources: Resource[] = [
      { name: "mesh", method: "ApplyMesh", keys: ["meshA", "meshB"], check: () => settlesToAOrB("mesh", meshState) },
      { name: "firewall", method: "ApplyFirewall", keys: ["firewallA", "firewallB"], check: () => settlesToAOrB("firewall", firewallState) },
      { name: "stun", method: "StunProbe", keys: ["stun", "stun"], check: () => noStunTableLeft().then(() => "clean") },
    ];
    const outcomes: Record<string, CancelOutcome[]> = { mesh: [], firewall: [], stun: [] };
    const seen: Record<string, Record<string, number>> = { mesh: {}, firewall: {}, stun: {} };

    const runResource = async (r: Resource): Promise<void> => {
      const out = outcomes[r.name]!;
      let cancelled = 0;
      for (let i = 0; cancelled < wanted[r.name]; i++) {
        if (i > wanted[r.name] * 4) throw new Error(`${r.name}: only ${cancelled} of ${i} calls were cancelled before completing`);
        const key = r.keys[i % 2]!;
        const maxDelay = Math.max(5, span[r.name]! * 1.3);
        const delay = Math.floor(rnd.next() * maxDelay);
        const x = rnd.next();
        const way: CancelWay = x < killShare / 2 ? "SIGTERM" : x < killShare ? "SIGKILL" : x < (1 + killShare) / 2 ? "cancel" : "deadline";
        const o =
          way === "SIGTERM" || way === "SIGKILL"
            ? await cancelByKill(callerScript, node.socket, r.method, files[key]!, way, delay, logDir)
            : await cancelInProcess(callers[i % 2]!, r.method, requests[key]!, way, delay);
        out.push(o);
        if (!o.cancelled) continue;
        cancelled++;
        if (cancelled % checkEvery === 0 || cancelled === wanted[r.name]) {
          const state = await r.check();
          seen[r.name]![state] = (seen[r.name]![state] ?? 0) + 1;
        }
      }
    };
    const started = performance.now();
    try {
      await Promise.all(resources.map(runResource));
    } finally {
      for (const c of callers) c.close();
    }
    const secs = ((performance.now() - started) / 1000).toFixed(0);

    for (const r of resources) {
      const o = outcomes[r.name]!;
      const by = (w: CancelWay) => o.filter((x) => x.way === w && x.cancelled).length;
      console.log(
        `[privhelper-cancel] ${r.name}: ${o.length} calls, ${o.filter((x) => x.cancelled).length} cancelled (cancel ${by("cancel")}, deadline ${by("deadline")}, SIGTERM ${by("SIGTERM")}, SIGKILL ${by("SIGKILL")}), checked states ${JSON.stringify(seen[r.name])}`,
      );
    }
    console.log(`[privhelper-cancel] ${secs} s of cancellations`);

    // The same process answers, and every resource settled on A or B.
    const after = new PrivCaller(node.socket);
    try {
      const info = await after.call(methodByName("GetInfo"), {});
      expect(statusName(info.code)).toBe("OK");
      expect((info.response as { pid: number }).pid).toBe(pid);
      const read = await after.call(methodByName("ReadMesh"), { interface: iface });
      expect(statusName(read.code)).toBe("OK");
      expect((read.response as { peers: unknown[] }).peers).toHaveLength(peers);
    } finally {
      after.close();
    }
    expect(node.proc!.exited).toBe(false);
    expect(["A", "B"]).toContain(await settlesToAOrB("mesh", meshState));
    expect(["A", "B"]).toContain(await settlesToAOrB("firewall", firewallState));
    expect(await stunLeft()).toBe(false);
    // Each kind of cancellation happened for each resource.
    for (const r of resources) {
      for (const w of ["cancel", "deadline", "SIGTERM", "SIGKILL"] as const) expect(outcomes[r.name]!.some((x) => x.way === w && x.cancelled), `${r.name} ${w}`).toBe(true);
    }
    const stderr = node.stderr();
    expect(stderr.match(/.*unhandled.*/gi) ?? []).toEqual([]);
    // A stack trace, printed raw or inside a JSON log line.
    expect(stderr.match(/.*(\n|\\n)\s+at \S+.*/g) ?? []).toEqual([]);
  }, 600_000);
});
