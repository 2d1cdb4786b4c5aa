import { randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, useHarness, type ProcessHandle, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { logLines, linesWith } from "./lib/logs.js";
import { createNode, type PlexdNode } from "./lib/node.js";
import { seededRandom } from "./lib/priv-specs.js";

// Crash-safe replay protection (docs/decisions.md#replay-protection-across-crashes, issue 14): the agent is SIGKILLed at random
// points while mockcp streams events of every kind, restarted, and mockcp then writes the frames
// it captured on the wire again, byte for byte (same id, nonce and signature). No event may be
// handled twice across all those processes — in particular not the events handled in the
// moments before a kill, whose bookkeeping a coalesced write would have lost.
//
// One topology, mockcp and privhelper per node for all rounds; only the agents restart. Two
// nodes take their rounds side by side, which halves the wall time (an agent start is mostly
// waiting: process spawn, TLS, privhelper), and shows one node's kills do not disturb another's.

useHarness();

/** Kill/replay rounds in all, shared between the nodes. */
const rounds = Number(process.env.PLEXD_E2E_REPLAY_ROUNDS ?? 200);
const nodeNames = ["a", "b"] as const;

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let api: string;

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: [...nodeNames] });
  cp = await startCpOnHub(topo, { keepalive: "5s" });
  api = `https://${topo.hub.ip}:${cpPort}`;
});

const b64key = (): string => randomBytes(32).toString("base64");
/** A peer that exists only in events: the state pull after each connect removes it again. */
const fakePeer = (k: number, publicKey = b64key()) => ({
  id: `n_fake_${k}`,
  public_key: publicKey,
  mesh_ip: `10.100.200.${k}`,
  endpoint: `192.0.2.${k}:51820`,
  allowed_ips: [`10.100.200.${k}/32`],
  psk: b64key(),
  hostname: `fake-${k}`,
});

/** One event of a random kind the agent handles (every handler, deferred and unknown types too). */
function randomEvent(int: (n: number) => number, round: number, i: number): { event_type: string; payload: Record<string, unknown> } {
  const k = 1 + int(20);
  switch (int(9)) {
    case 0:
      return { event_type: "peer_added", payload: fakePeer(k) };
    case 1:
      return { event_type: "peer_key_rotated", payload: fakePeer(k) };
    case 2:
      return { event_type: "peer_endpoint_changed", payload: { peer_id: `n_fake_${k}`, endpoint: `192.0.2.${k}:${51820 + i}` } };
    case 3:
      return { event_type: "peer_removed", payload: { peer_id: `n_fake_${k}` } };
    case 4:
      return { event_type: "policy_updated", payload: { policies: [] } };
    case 5:
      return { event_type: "node_secrets_updated", payload: { secret_refs: [{ key: `k${k}`, version: round + 1 }] } };
    case 6:
      return { event_type: "session_revoked", payload: { session_id: `sess_${round}_${i}`, revoked_at: new Date().toISOString() } };
    case 7:
      return { event_type: "x_future_event", payload: { round, i } };
    default:
      return { event_type: "node_state_updated", payload: { metadata: { round: String(round), i: String(i) } } };
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface NodeRun {
  node: PlexdNode;
  id: string;
  /** Every agent process this node had, in order. */
  agents: ProcessHandle[];
  agent: ProcessHandle;
  start(): Promise<ProcessHandle>;
}

async function setUp(name: string): Promise<NodeRun> {
  const { token } = await cp.client.createToken();
  const node = createNode({ name, ns: topo.node(name).ns, api, caFile: cp.caFile, users, token, logLevel: "debug" });
  await node.startPrivhelper();
  const run: NodeRun = {
    node,
    id: "",
    agents: [],
    agent: undefined as unknown as ProcessHandle,
    async start() {
      const p = node.startAgent();
      run.agents.push(p);
      run.agent = p;
      await p.waitForLine(/"msg":"event stream connected"/, 60_000);
      return p;
    },
  };
  await run.start();
  run.id = JSON.parse(readFileSync(join(node.dataDir, "identity.json"), "utf8")).node_id as string;
  return run;
}

/** mulberry32, as seededRandom uses. */
function prng(seed: number): { int: (max: number) => number } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { int: (max) => Math.floor(next() * max) };
}

const handledLine = (p: ProcessHandle, eventId: string) => linesWith(p.output(), "event handled", { event_id: eventId }).length;

/** Kill/replay rounds on one node; returns how many rounds replayed the last event before a kill. */
async function killRounds(run: NodeRun, n: number, rnd: { int: (max: number) => number }, timing: Record<"start" | "replay" | "kill", number>): Promise<number> {
  const { id } = run;
  let windowStart = 0; // captured frames after this seq came since the previous round began
  let covered = 0;
  for (let r = 0; r < n; r++) {
    // The event the killed agent handled last: its frames come back first, and must be refused.
    const last = linesWith(run.agent.output(), "event handled").at(-1)?.event_id as string | undefined;
    const tStart = Date.now();
    const agent = await run.start();
    timing.start += Date.now() - tStart;
    const frames = (await cp.client.capturedFrames(id)).filter((f) => f.kept);
    // Every frame since the previous round began, and every frame of the event the killed
    // agent handled last (it may have come in an earlier round and been handled only now).
    const recent = frames.filter((f) => f.seq > windowStart || (last !== undefined && f.event_id === last));
    const older = frames.filter((f) => f.seq <= windowStart);
    const sample = Array.from({ length: Math.min(older.length, 10) }, () => older[rnd.int(older.length)]!);
    windowStart = frames.at(-1)?.seq ?? windowStart;
    await cp.client.replayCapturedFrames(id, [...recent, ...sample].map((f) => f.seq));
    if (last !== undefined) {
      const refused = () => agent.output().split("\n").some((l) => l.includes(`"event_id":"${last}"`) && (l.includes('"msg":"signed event rejected"') || l.includes('"msg":"duplicate event dropped"')));
      await expect.poll(refused, { timeout: 30_000, message: `${run.node.name} round ${r}: replayed ${last} not refused` }).toBe(true);
      covered++;
    }
    timing.replay += Date.now() - tStart;

    // A stream of new events; the SIGKILL lands somewhere in it.
    let pushing = true;
    const pusher = (async () => {
      for (let i = 0; pushing; i++) {
        await cp.client.pushEvent(id, randomEvent(rnd.int, r, i));
        await sleep(5 + rnd.int(25));
      }
    })();
    await sleep(rnd.int(400));
    const tKill = Date.now();
    await agent.kill("SIGKILL");
    pushing = false;
    await pusher;
    timing.kill += Date.now() - tKill;
  }
  return covered;
}

describe("replay protection across SIGKILL", () => {
  it(`refuses every captured frame replayed after a SIGKILL at a random point (${rounds} rounds)`, { timeout: 900_000 }, async () => {
    // One random stream per node, both from the printed seed (kill points also depend on timing).
    const { seed } = seededRandom("replay-kill");
    const runs = await Promise.all(nodeNames.map((n) => setUp(n)));

    // Events that only happen once, sent while the agents are down so that they arrive through
    // mockcp's own replay after Last-Event-ID: a signing-key rotation (long overlap, so frames
    // signed with the old key stay valid) and a rotate_keys. (Sent while a state pull is in
    // flight, the rotation could be undone by the pull's older key set for a while: the agent
    // then rejects new-key events as bad_signature until its next pull.)
    for (const run of runs) {
      // A handled event first: without a Last-Event-ID, mockcp would send live events only.
      const first = await cp.client.pushEvent(run.id, { event_type: "x_future_event", payload: { setup: true } });
      await expect.poll(() => handledLine(run.agent, first.event_id), { timeout: 30_000 }).toBe(1);
      await run.agent.kill("SIGKILL");
    }
    await cp.client.rotateSigningKey({ transition_period: "1h" });
    for (const run of runs) await cp.client.pushEvent(run.id, { event_type: "rotate_keys", payload: { reason: "replay e2e" } });

    const t0 = Date.now();
    const timing = { start: 0, replay: 0, kill: 0 };
    const progress = setInterval(() => console.log(`[replay-kill] ${runs.map((r) => `${r.node.name}: ${r.agents.length - 1} starts`).join(", ")}; ${((Date.now() - t0) / 1000).toFixed(0)} s`), 30_000);
    let covered: number[];
    try {
      covered = await Promise.all(runs.map((run, i) => killRounds(run, Math.ceil(rounds / runs.length), prng(seed + i), timing)));
    } finally {
      clearInterval(progress);
    }
    const total = Math.ceil(rounds / runs.length) * runs.length;
    console.log(`[replay-kill] ${total} rounds in ${((Date.now() - t0) / 1000).toFixed(0)} s (summed over nodes: agent start ${(timing.start / 1000).toFixed(0)} s, replay ${((timing.replay - timing.start) / 1000).toFixed(0)} s, kill ${(timing.kill / 1000).toFixed(0)} s)`);

    for (const run of runs) {
      // A last, orderly run: the whole history once more, then shutdown.
      const agent = await run.start();
      const all = (await cp.client.capturedFrames(run.id)).filter((f) => f.kept);
      await cp.client.replayCapturedFrames(run.id, all.map((f) => f.seq));
      const final = await cp.client.pushEvent(run.id, { event_type: "x_future_event", payload: { final: true } });
      await expect.poll(() => handledLine(agent, final.event_id), { timeout: 30_000 }).toBe(1);
      expect((await agent.kill("SIGTERM", { graceMs: 15_000 })).exitCode).toBe(0);

      // No event handled twice, by any of the node's processes.
      const handled = new Map<string, number>();
      let refused = 0;
      for (const p of run.agents) {
        for (const l of logLines(p.output())) {
          if (l.msg === "event handled") handled.set(l.event_id as string, (handled.get(l.event_id as string) ?? 0) + 1);
          if (l.msg === "signed event rejected" && (l.reason === "replay" || l.reason === "stale")) refused++;
          if (l.msg === "duplicate event dropped") refused++;
        }
      }
      const twice = [...handled].filter(([, c]) => c > 1);
      console.log(`[replay-kill] node ${run.node.name}: ${run.agents.length} agent processes, ${handled.size} events handled, ${refused} replayed frames refused, ${all.length} frames replayed at the end`);
      expect(twice, `${run.node.name}: events handled more than once: ${JSON.stringify(twice.slice(0, 10))}`).toEqual([]);
      // The test did what it claims: most rounds replayed the last event before the kill, and
      // every kind of event is among those captured and replayed.
      expect(refused).toBeGreaterThan(all.length / 2);
      const kinds = new Set(all.map((f) => f.event_type));
      for (const k of ["peer_added", "peer_key_rotated", "peer_endpoint_changed", "peer_removed", "policy_updated", "node_secrets_updated", "session_revoked", "x_future_event", "node_state_updated", "signing_key_rotated", "rotate_keys"]) {
        expect(kinds.has(k), `${run.node.name}: ${k} captured`).toBe(true);
      }
      // The bookkeeping is private to the agent.
      for (const f of ["events.json", "events.journal"]) expect(statSync(join(run.node.dataDir, "cache", f)).mode & 0o777).toBe(0o600);
    }
    for (const c of covered) expect(c).toBeGreaterThan(rounds / runs.length / 2);
  });
});
