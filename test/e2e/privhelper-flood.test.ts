// privhelper stays bounded under floods: memory (VmRSS sampled every 100 ms from outside),
// service to a quiet second caller (one noisy caller cannot starve the others), and life (the
// same process answers afterwards). Three floods, one after the other: 200 concurrent
// 1,000-peer ApplyMesh dry runs over four connections; 100 MB requests; 10,000 concurrent
// streams on one connection. Each flood call either succeeds or is refused with
// RESOURCE_EXHAUSTED / UNAVAILABLE.
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { addNamespace, RUN_PREFIX, useHarness } from "./harness/vitest.js";
import { methodByName, PrivCaller, statusName, type CallOutcome } from "./lib/priv-caller.js";
import { hugeRequest, quietCaller, startRssSampler, streamFlood, type QuietReport, type RssSampler } from "./lib/priv-flood.js";
import { createPrivNode, keepPrivLog, type PrivNode } from "./lib/priv-node.js";
import { meshSpec, overlappingMeshes, type MeshPair } from "./lib/priv-specs.js";
import { ensureBuilt } from "./privhelper-util.js";

useHarness();
afterEach((ctx) => {
  if (ctx.task.result?.state === "fail" && node) keepPrivLog(node, ctx.task.name);
});

const iface = `plexd${RUN_PREFIX.slice(2)}f`;
const RESOURCE_EXHAUSTED = 8;
const UNAVAILABLE = 14;
/** How a flood call may end. */
const allowed = new Set(["OK", statusName(RESOURCE_EXHAUSTED), statusName(UNAVAILABLE)]);
/** Limits of the contract; MB read as MiB (/proc reports KiB). */
const peakLimitMiB = 150;
const recoverWithinMiB = 25;
const recoverWithinMs = 30_000;

let ns: string;
let node: PrivNode;
let pair: MeshPair;
let rss: RssSampler;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

interface PhaseResult {
  name: string;
  seconds: number;
  outcomes: Record<string, number>;
  quiet: QuietReport;
  startMiB: number;
  peakMiB: number;
  endMiB: number;
  /** ms after the flood until RSS was back within the limit; undefined = not within 30 s. */
  recoveredMs: number | undefined;
  curve: string;
}

const tally = (codes: number[]): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const c of codes) out[statusName(c)] = (out[statusName(c)] ?? 0) + 1;
  return out;
};

/** Runs `flood` with a quiet caller beside it, then waits for RSS to come back. */
async function phase(name: string, idleMiB: number, flood: () => Promise<Record<string, number>>): Promise<PhaseResult> {
  const stop = new AbortController();
  const start = Date.now();
  const quiet = quietCaller(node.socket, iface, stop.signal);
  let outcomes: Record<string, number>;
  try {
    outcomes = await flood();
  } finally {
    stop.abort();
  }
  const end = Date.now();
  const quietReport = await quiet;
  let recoveredMs: number | undefined;
  while (Date.now() - end < recoverWithinMs) {
    const last = rss.samples().at(-1);
    if (last && last.at > end && last.mib <= idleMiB + recoverWithinMiB) {
      recoveredMs = last.at - end;
      break;
    }
    await sleep(250);
  }
  const during = rss.between(start, Date.now());
  // One value per second: the shape of the curve in the summary.
  const perSecond: string[] = [];
  for (let t = start; t < Date.now(); t += 1000) {
    const inSec = during.filter((s) => s.at >= t && s.at < t + 1000);
    if (inSec.length > 0) perSecond.push(Math.max(...inSec.map((s) => s.mib)).toFixed(0));
  }
  return {
    name,
    seconds: (end - start) / 1000,
    outcomes,
    quiet: quietReport,
    startMiB: during[0]?.mib ?? NaN,
    peakMiB: Math.max(...during.map((s) => s.mib)),
    endMiB: rss.between(start, end).at(-1)?.mib ?? NaN,
    recoveredMs,
    curve: perSecond.join(" "),
  };
}

beforeAll(async () => {
  await ensureBuilt();
  ns = await addNamespace("pflood");
  node = createPrivNode({ name: "flood", ns, iface });
  pair = overlappingMeshes(1000, 250, 250);
  await node.start();
  const c = new PrivCaller(node.socket);
  try {
    const r = await c.call(methodByName("ApplyMesh"), { spec: meshSpec(iface, pair.privateKey, pair.old) }, { deadlineMs: 60_000 });
    if (r.code !== 0) throw new Error(`ApplyMesh: ${statusName(r.code)} ${r.details}`);
    // Warm: the paths the floods take have run once before the idle value is taken.
    await c.call(methodByName("ApplyMesh"), { spec: meshSpec(iface, pair.privateKey, pair.new), dryRun: true });
    await c.call(methodByName("ReadMesh"), { interface: iface });
  } finally {
    c.close();
  }
  rss = startRssSampler(node.proc!.pid);
}, 120_000);

describe("privhelper under floods", () => {
  it("keeps RSS bounded, serves a quiet caller within 5 s and survives", async () => {
    const pid = node.proc!.pid;
    await sleep(5_000);
    const idleMiB = median(rss.samples().slice(-20).map((s) => s.mib));
    expect(idleMiB).toBeGreaterThan(0);
    const dryRun = { spec: meshSpec(iface, pair.privateKey, pair.new), dryRun: true };
    const results: PhaseResult[] = [];

    results.push(
      await phase("a: 200 concurrent 1,000-peer ApplyMesh dry runs over 4 connections", idleMiB, async () => {
        const callers = Array.from({ length: 4 }, () => new PrivCaller(node.socket, { ownConnection: true }));
        try {
          const calls = Array.from({ length: 200 }, (_, i) => callers[i % 4]!.call(methodByName("ApplyMesh"), dryRun, { deadlineMs: 180_000 }));
          return tally((await Promise.all(calls)).map((r: CallOutcome) => r.code));
        } finally {
          for (const c of callers) c.close();
        }
      }),
    );

    results.push(
      await phase("b: 4 concurrent 100 MB ApplyMesh requests", idleMiB, async () => {
        const body = hugeRequest("ApplyMesh", dryRun, 100 * 1024 * 1024);
        // The client's own limit is raised so that privhelper, not the client, must refuse.
        const callers = Array.from({ length: 4 }, () => new PrivCaller(node.socket, { ownConnection: true, maxSendBytes: 256 * 1024 * 1024 }));
        try {
          const calls = callers.map((c) => c.call(methodByName("ApplyMesh"), body, { deadlineMs: 120_000 }));
          return tally((await Promise.all(calls)).map((r) => r.code));
        } finally {
          for (const c of callers) c.close();
        }
      }),
    );

    results.push(
      await phase("c: 10,000 concurrent GetInfo streams on one connection", idleMiB, async () => {
        const ended = await streamFlood(node.socket, "GetInfo", {}, 10_000, 60_000);
        // A stream the server refuses (REFUSED_STREAM 7, ENHANCE_YOUR_CALM 11) is what a gRPC
        // client reports as UNAVAILABLE / RESOURCE_EXHAUSTED.
        const out: Record<string, number> = {};
        for (const [k, n] of Object.entries(ended)) {
          const m = /^(grpc-status|rst) (\d+)$/.exec(k);
          const name = m?.[1] === "grpc-status" ? statusName(Number(m[2])) : m?.[2] === "7" ? statusName(UNAVAILABLE) : m?.[2] === "11" ? statusName(RESOURCE_EXHAUSTED) : k;
          out[name] = (out[name] ?? 0) + n;
        }
        return out;
      }),
    );

    console.log(
      `[privhelper-flood] idle RSS before the floods: ${idleMiB.toFixed(1)} MiB (limits: peak < ${peakLimitMiB} MiB, back within ${recoverWithinMiB} MiB of idle in ${recoverWithinMs / 1000} s)\n` +
        results
          .map(
            (r) =>
              `  ${r.name}: ${r.seconds.toFixed(1)} s, outcomes ${JSON.stringify(r.outcomes)}\n` +
              `    RSS at the start ${r.startMiB.toFixed(1)} MiB, peak ${r.peakMiB.toFixed(1)} MiB, at the flood's end ${r.endMiB.toFixed(1)} MiB, ${r.recoveredMs === undefined ? `NOT back within ${recoverWithinMiB} MiB of idle after ${recoverWithinMs / 1000} s (last ${rss.samples().at(-1)?.mib.toFixed(1)} MiB)` : `back near idle ${(r.recoveredMs / 1000).toFixed(1)} s after`}\n` +
              `    RSS per second (MiB): ${r.curve}\n` +
              `    quiet caller: ${r.quiet.calls} calls, slowest ${r.quiet.maxMs} ms, ${r.quiet.late.length} late or failed${r.quiet.late.length > 0 ? `: ${r.quiet.late.slice(0, 3).join("; ")}` : ""}`,
          )
          .join("\n"),
    );

    for (const r of results) {
      expect.soft(Object.keys(r.outcomes).filter((k) => !allowed.has(k)), `${r.name}: outcomes other than OK / RESOURCE_EXHAUSTED / UNAVAILABLE`).toEqual([]);
      expect.soft(r.quiet.late, `${r.name}: the quiet caller`).toEqual([]);
      expect.soft(r.quiet.calls, `${r.name}: the quiet caller made calls`).toBeGreaterThan(0);
      expect.soft(r.peakMiB, `${r.name}: peak RSS (MiB)`).toBeLessThan(peakLimitMiB);
      expect.soft(r.recoveredMs, `${r.name}: RSS back within ${recoverWithinMiB} MiB of idle within ${recoverWithinMs / 1000} s`).toBeDefined();
    }
    // Never crashed: the same process still answers, and it printed no stack trace.
    expect(node.proc!.exited).toBe(false);
    expect(node.stderr().match(/.*(unhandled|(\n|\\n)\s+at \S+).*/gi) ?? []).toEqual([]);
    const after = new PrivCaller(node.socket);
    try {
      const info = await after.call(methodByName("GetInfo"), {});
      expect(statusName(info.code)).toBe("OK");
      expect((info.response as { pid: number }).pid).toBe(pid);
    } finally {
      after.close();
    }
    await rss.stop();
  }, 600_000);
});
