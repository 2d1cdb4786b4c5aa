// Crash consistency of ApplyMesh (docs/architecture.md#privhelper): privhelper killed with SIGKILL at any point of
// an apply leaves a state the next apply settles without loss — additions and updates are
// written before removals, routes after the peers they serve — and wireguard-go, detached,
// keeps the tunnels up. Each round applies one of two overlapping 1,000-peer meshes over the
// other (the direction alternates), kills privhelper at a random point, checks the live
// device and routes, restarts privhelper and applies the target again, which must then hold
// exactly. An ApplyFirewall runs beside each apply, so kills also land inside nft
// transactions fed through privhelper's temporary FIFOs: none may be left in its TMPDIR.
import { beforeAll, describe, expect, it, afterEach } from "vitest";
import { addNamespace, RUN_PREFIX, useHarness } from "./harness/vitest.js";
import { methodByName, PrivCaller, statusName } from "./lib/priv-caller.js";
import { createPrivNode, keepPrivLog, type PrivNode } from "./lib/priv-node.js";
import { firewallSpec, meshSpec, overlappingMeshes, seededRandom, type MeshPair, type Peer } from "./lib/priv-specs.js";
import { expectedPeers, liveFirewall, liveMesh, madeRoutes, meshText, namespacePidsExcept, wireguardGoPids } from "./lib/priv-state.js";
import { ensureBuilt } from "./privhelper-util.js";

useHarness();
afterEach((ctx) => {
  if (ctx.task.result?.state === "fail" && node) keepPrivLog(node, ctx.task.name);
});

const iface = `plexd${RUN_PREFIX.slice(2)}x`;
const peers = 1000;
const rounds = Number(process.env.PLEXD_E2E_CRASH_ROUNDS ?? 100);
const fwRules = 300;

let ns: string;
let node: PrivNode;
let pair: MeshPair;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Side = "old" | "new";
const peersOf = (s: Side): Peer[] => (s === "old" ? pair.old : pair.new);
const request = (s: Side) => ({ spec: meshSpec(iface, pair.privateKey, peersOf(s)) });
const fwRequest = (s: Side) => ({ spec: firewallSpec(iface, fwRules, s === "old" ? 0 : 1) });
const fwText: Record<Side, string> = { old: "", new: "" };

/** Applies both; resolves with how long the ApplyMesh took as the caller saw it. */
async function applyBoth(caller: PrivCaller, side: Side): Promise<number> {
  const t = performance.now();
  let meshMs = 0;
  const [m, f] = await Promise.all([
    caller.call(methodByName("ApplyMesh"), request(side), { deadlineMs: 120_000 }).then((r) => {
      meshMs = performance.now() - t;
      return r;
    }),
    caller.call(methodByName("ApplyFirewall"), fwRequest(side), { deadlineMs: 120_000 }),
  ]);
  for (const r of [m, f]) {
    const failed = (r.response as { result?: { failedStep?: string; error?: string } } | undefined)?.result;
    if (r.code !== 0 || (failed?.failedStep ?? "") !== "") throw new Error(`${r.method} ${side}: ${statusName(r.code)} ${r.details} ${failed?.failedStep ?? ""} ${failed?.error ?? ""}`);
  }
  return meshMs;
}

/** The device and routes hold exactly `side`'s mesh. */
async function expectExactly(side: Side): Promise<void> {
  const live = await liveMesh(ns, iface);
  expect(live, `device ${iface}`).toBeDefined();
  expect(meshText(live!.peers)).toBe(meshText(expectedPeers(peersOf(side))));
  const routes = await madeRoutes(ns);
  expect(routes.filter((r) => r.dev !== iface)).toEqual([]);
  expect(routes.map((r) => r.dst).sort()).toEqual(peersOf(side).flatMap((p) => p.allowedIps).sort());
}

type Outcome = "old" | "new" | "partial";

/**
 * What a kill left, checked against the crash-consistency contract; returns whether it is
 * exactly the state before, exactly the target, or in between.
 */
async function checkCrashState(from: Side, to: Side): Promise<Outcome> {
  const live = await liveMesh(ns, iface);
  expect(live, "the device survives privhelper's death").toBeDefined();
  const want = { [from]: expectedPeers(peersOf(from)), [to]: expectedPeers(peersOf(to)) } as Record<Side, Map<string, string>>;
  const problems: string[] = [];
  for (const [key, line] of live!.peers) {
    if (!want.old.has(key) && !want.new.has(key)) problems.push(`peer ${key} is in neither mesh`);
    else if (line !== want.old.get(key) && line !== want.new.get(key)) problems.push(`peer ${key} is configured as neither its old nor its new version: ${line}`);
  }
  const missing = (s: Side) => [...want[s].keys()].filter((k) => !live!.peers.has(k)).length;
  if (missing(from) > 0 && missing(to) > 0) problems.push(`the live peer set holds neither all of ${from} (${missing(from)} missing) nor all of ${to} (${missing(to)} missing): a removal came before an addition`);
  const allowed = new Set([...pair.old, ...pair.new].flatMap((p) => p.allowedIps));
  for (const r of await madeRoutes(ns)) {
    if (r.dev !== iface) problems.push(`route ${r.dst} points at ${r.dev}, not ${iface}`);
    else if (!allowed.has(r.dst)) problems.push(`route ${r.dst} is an allowed IP of neither mesh`);
  }
  // Soft: the rounds go on (the restart below settles the state again), so the summary
  // shows how often a kill broke the contract, not only the first time.
  expect.soft(problems.slice(0, 10), `${problems.length} problems after a kill`).toEqual([]);
  const text = meshText(live!.peers);
  const routes = (await madeRoutes(ns)).map((r) => r.dst).sort().join(",");
  const exactly = (s: Side) => text === meshText(want[s]) && routes === peersOf(s).flatMap((p) => p.allowedIps).sort().join(",");
  return exactly(from) ? "old" : exactly(to) ? "new" : "partial";
}

/** Waits until privhelper's orphaned children (ip, nft, wg) have finished what they were given. */
async function orphansDone(keep: number[]): Promise<void> {
  const until = Date.now() + 15_000;
  let left: number[] = [];
  while (Date.now() < until) {
    left = await namespacePidsExcept(ns, keep);
    if (left.length === 0) return;
    await sleep(50);
  }
  throw new Error(`processes still running in ${ns} 15 s after privhelper was killed: ${left.join(", ")}`);
}

beforeAll(async () => {
  await ensureBuilt();
  ns = await addNamespace("pcrash");
  node = createPrivNode({ name: "crash", ns, iface });
  pair = overlappingMeshes(peers, peers / 4, peers / 4);
  await node.start();
  const c = new PrivCaller(node.socket);
  try {
    for (const side of ["new", "old"] as const) {
      await applyBoth(c, side);
      fwText[side] = (await liveFirewall(ns)) ?? "";
    }
  } finally {
    c.close();
  }
  expect(fwText.old).not.toBe(fwText.new);
}, 180_000);

describe("privhelper killed mid-apply", () => {
  it(`leaves a crash-consistent mesh in ${rounds} kills of a 1,000-peer ApplyMesh`, async () => {
    const rnd = seededRandom("privhelper-crash");
    await expectExactly("old");
    const wg = wireguardGoPids(iface);
    expect(wg).toHaveLength(1);

    // When an uninterrupted ApplyMesh ends inside privhelper (its "rpc" log line), counted from
    // the moment the request left, each way and beside its firewall as in the rounds; the
    // caller's own view comes later (the answer waits behind the firewall's work).
    let caller = new PrivCaller(node.socket);
    const spans: number[] = [];
    const seenByCaller: number[] = [];
    for (const side of ["new", "old", "new", "old"] as const) {
      const from = node.log().length;
      const sent = Date.now();
      seenByCaller.push(await applyBoth(caller, side));
      const done = node.log().slice(from).find((l) => l.rpc === "ApplyMesh");
      spans.push(typeof done?.time === "string" ? Date.parse(done.time) - sent : seenByCaller.at(-1)!);
    }
    const maxDelay = Math.max(...spans) * 1.2;
    console.log(
      `[privhelper-crash] uninterrupted ApplyMesh (${peers} peers, ${pair.counts.kept} kept, ${pair.counts.updated} updated, ${pair.counts.removed} removed, ${pair.counts.added} added) beside ApplyFirewall (${fwRules} rules) ends after ${spans.join(", ")} ms in privhelper (${seenByCaller.map((s) => s.toFixed(0)).join(", ")} ms for the caller); kills at 0-${maxDelay.toFixed(0)} ms`,
    );

    const results: { delay: number; outcome: Outcome; completed: boolean }[] = [];
    /** /tmp/plexd-priv-* entries privhelper left in its TMPDIR → the round whose kill left them. */
    const leftovers = new Map<string, number>();
    let from: Side = "old";
    const started = performance.now();
    const phaseMs = { kill: 0, settle: 0, check: 0, restart: 0, reapply: 0 };
    let mark = performance.now();
    const phase = (k: keyof typeof phaseMs) => {
      const now = performance.now();
      phaseMs[k] += now - mark;
      mark = now;
    };
    for (let round = 0; round < rounds; round++) {
      const to: Side = from === "old" ? "new" : "old";
      const delay = rnd.next() * maxDelay;
      const logBefore = node.log().length;
      const mesh = caller.call(methodByName("ApplyMesh"), request(to), { deadlineMs: 60_000 });
      const fw = caller.call(methodByName("ApplyFirewall"), fwRequest(to), { deadlineMs: 60_000 });
      await sleep(delay);
      await node.kill9();
      await Promise.all([mesh, fw]);
      caller.close();
      phase("kill");
      // Did the apply finish before the kill? (privhelper logs each completed apply.)
      const completed = node.log().slice(logBefore).some((l) => l.msg === "mesh applied" || (l.rpc === "ApplyMesh" && l.outcome === "ok"));
      await orphansDone(wg);
      phase("settle");
      expect(wireguardGoPids(iface), "wireguard-go outlives privhelper").toEqual(wg);
      const outcome = await checkCrashState(from, to);
      results.push({ delay, outcome, completed });
      expect.soft([fwText.old, fwText.new], "table inet plexd is one whole ruleset").toContain((await liveFirewall(ns)) ?? "(no table)");
      const left = node.tmpLeftovers().filter((d) => !leftovers.has(d));
      for (const d of left) leftovers.set(d, round);
      phase("check");

      // A new privhelper settles the target exactly.
      await node.start();
      phase("restart");
      caller = new PrivCaller(node.socket);
      await applyBoth(caller, to);
      await expectExactly(to);
      expect(await liveFirewall(ns)).toBe(fwText[to]);
      phase("reapply");
      from = to;
    }
    caller.close();

    // Where the kills landed: by delay (tenths of the range) and by what they left.
    const buckets = Array.from({ length: 10 }, (_, i) => {
      const inB = results.filter((r) => Math.min(9, Math.floor((r.delay / maxDelay) * 10)) === i);
      const n = (o: Outcome) => inB.filter((r) => r.outcome === o).length;
      return `${((i * maxDelay) / 10).toFixed(0).padStart(5)}-${(((i + 1) * maxDelay) / 10).toFixed(0).padEnd(5)} ms: ${String(inB.length).padStart(3)} kills  old ${String(n("old")).padStart(3)}  partial ${String(n("partial")).padStart(3)}  new ${String(n("new")).padStart(3)}`;
    });
    const inside = results.filter((r) => !r.completed && r.outcome !== "old").length;
    const before = results.filter((r) => r.outcome === "old").length;
    console.log(
      `[privhelper-crash] ${rounds} rounds in ${((performance.now() - started) / 1000).toFixed(0)} s; kill points (delay after the request left):\n${buckets.join("\n")}\n` +
        `  per round: ${Object.entries(phaseMs).map(([k, v]) => `${k} ${(v / rounds).toFixed(0)} ms`).join(", ")}\n` +
        `  ${before} left the state before untouched, ${inside} landed inside an apply (state changed, no completion logged), ${results.filter((r) => r.completed).length} after it completed`,
    );
    // The kills spanned the apply: some before it changed anything, some inside it.
    expect(before).toBeGreaterThan(0);
    expect(inside).toBeGreaterThan(0);
    // A killed privhelper must not leave its temporary directories behind (they would pile up
    // with every crash); the next privhelper may also sweep its predecessors' ones.
    expect(node.tmpLeftovers().map((d) => `${d} (kill of round ${leftovers.get(d) ?? "?"})`)).toEqual([]);

  }, 900_000);
});
