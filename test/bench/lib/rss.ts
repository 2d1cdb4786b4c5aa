import { readFileSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";

// Resident memory of benchmark processes, read from outside (/proc/PID/status), and the
// reference it is compared with: a bare `node` that only waits, started in the same run with
// the same node flags.
//
// VmRSS = RssAnon (the process's own heap, stacks, malloc) + RssFile (pages of the node binary
// and shared libraries it touched; shared with every other node process through the page
// cache) + RssShmem. Both parts are printed: flags and lazy loading move them differently.

export interface RssSample {
  /** VmRSS in MB. */
  rss: number;
  /** RssAnon in MB. */
  anon: number;
  /** RssFile in MB. */
  file: number;
}

export function rssOf(pid: number): RssSample {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
  return { rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
}

export const fmtRss = (s: RssSample): string => `${s.rss.toFixed(1)} MB (anon ${s.anon.toFixed(1)}, file ${s.file.toFixed(1)})`;

export interface Settled {
  sample: RssSample;
  /** Time from the call until the figure held still (ms). */
  waitedMs: number;
  /** False when the cap was reached before it held still. */
  settled: boolean;
}

export interface SettleOptions {
  signal: AbortSignal;
  /** Sampling period (default 1 s). */
  intervalMs?: number;
  /** Consecutive samples that must agree (default 3, i.e. 2 s still). */
  agree?: number;
  /** Agreement tolerance in MB (default 1). */
  toleranceMb?: number;
  /** Wait at least this long before the first sample counts (default 0). */
  minMs?: number;
  /** Give up waiting after this long and report the last sample (default 30 s). */
  capMs?: number;
  /** Called with every sample (progress). */
  onSample?: (s: RssSample, elapsedMs: number) => void;
}

/**
 * Waits until the process's RSS holds still: `agree` samples `intervalMs` apart within
 * `toleranceMb` of each other, not before `minMs`, at most `capMs`. V8 gives memory back
 * lazily — the young generation is emptied only by the next scavenge, and pages of a shrunken
 * old generation go back when its memory reducer runs, several seconds after the process goes
 * idle — so a figure read right after the work is a peak, not what the process holds.
 */
export async function settledRss(pid: number, opts: SettleOptions): Promise<Settled> {
  const interval = opts.intervalMs ?? 1000;
  const agree = opts.agree ?? 3;
  const tolerance = opts.toleranceMb ?? 1;
  const minMs = opts.minMs ?? 0;
  const cap = opts.capMs ?? 30_000;
  const t0 = Date.now();
  const window: RssSample[] = [];
  for (;;) {
    if (opts.signal.aborted) throw new Error("aborted while waiting for RSS to settle");
    const s = rssOf(pid);
    window.push(s);
    if (window.length > agree) window.shift();
    const waited = Date.now() - t0;
    opts.onSample?.(s, waited);
    const values = window.map((w) => w.rss);
    const still = window.length === agree && Math.max(...values) - Math.min(...values) <= tolerance;
    if ((still && waited >= minMs) || waited >= cap) return { sample: s, waitedMs: waited, settled: still };
    await new Promise((r) => setTimeout(r, interval));
  }
}

export interface WindowStats {
  median: RssSample;
  min: number;
  max: number;
  samples: number;
}

/**
 * RSS of a process that is idle but not still — the agent's heartbeats (30 s), metrics (15 s)
 * and state pulls (60 s) allocate and leave garbage until the next major GC, so its RSS is a
 * saw-tooth — sampled every second for `windowMs` after `warmMs`: the median (by VmRSS) is what
 * it typically holds, min and max the band.
 */
export async function rssOverWindow(pid: number, opts: { signal: AbortSignal; warmMs: number; windowMs: number; onSample?: (s: RssSample, elapsedMs: number) => void }): Promise<WindowStats> {
  const t0 = Date.now();
  const samples: RssSample[] = [];
  while (Date.now() - t0 < opts.warmMs + opts.windowMs) {
    if (opts.signal.aborted) throw new Error("aborted while sampling RSS");
    const s = rssOf(pid);
    const elapsed = Date.now() - t0;
    opts.onSample?.(s, elapsed);
    if (elapsed >= opts.warmMs) samples.push(s);
    await new Promise((r) => setTimeout(r, 1000));
  }
  const sorted = [...samples].sort((a, b) => a.rss - b.rss);
  return { median: sorted[Math.floor(sorted.length / 2)]!, min: sorted[0]!.rss, max: sorted.at(-1)!.rss, samples: samples.length };
}

/**
 * The floor: RSS of `node [flags] -e "setInterval(() => {}, 1e9)"` once settled — what any
 * node process costs here before it loads a line of plexd. Run as the same node binary.
 */
export async function bareNodeRss(flags: readonly string[], signal: AbortSignal): Promise<RssSample> {
  const child = execa(process.execPath, [...flags, "-e", "setInterval(() => {}, 1e9)"], { stdio: "ignore", reject: false, cleanup: true });
  try {
    if (child.pid === undefined) throw new Error("bare node did not start");
    // A bare node holds still at once; the same rule as for the measured process anyway.
    const s = await settledRss(child.pid, { signal, minMs: 2000, capMs: 10_000 });
    return s.sample;
  } finally {
    child.kill("SIGKILL");
    await child;
  }
}

/**
 * A preload (`node --import FILE`) that, on SIGUSR2, writes the process's own view of its
 * memory to PLEXD_MEMPROBE_OUT: process.memoryUsage(), V8's heap spaces, VmRSS parts, and the
 * same again after a full GC when node runs with --expose-gc (what is live vs merely not yet
 * collected). Injected by benchmarks only, on request (PLEXD_BENCH_MEMPROBE=1); it changes
 * nothing in the measured program. With PLEXD_BENCH_HEAPSNAPSHOT_DIR (writable by the probed
 * process's user) it also writes a heap snapshot there, after the full GC.
 */
const memprobeSource = `
import { readFileSync, writeFileSync } from "node:fs";
import v8 from "node:v8";
const out = process.env.PLEXD_MEMPROBE_OUT;
const snapshotDir = process.env.PLEXD_MEMPROBE_SNAPSHOT_DIR;
const mb = (n) => Math.round((n / 1048576) * 10) / 10;
function snap() {
  const status = readFileSync("/proc/self/status", "utf8");
  const kb = (f) => mb(Number(new RegExp(f + ":\\\\s+(\\\\d+) kB").exec(status)?.[1] ?? NaN) * 1024);
  const m = process.memoryUsage();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: mb(s.space_size), used: mb(s.space_used_size) }]));
  return { rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile"), heapTotal: mb(m.heapTotal), heapUsed: mb(m.heapUsed), external: mb(m.external), arrayBuffers: mb(m.arrayBuffers), spaces };
}
if (out) process.on("SIGUSR2", () => {
  const before = snap();
  const after = typeof globalThis.gc === "function" ? (globalThis.gc(), snap()) : null;
  if (snapshotDir) v8.writeHeapSnapshot(snapshotDir + "/" + process.pid + ".heapsnapshot");
  writeFileSync(out, JSON.stringify({ before, afterFullGc: after }));
});
`;

export interface MemProbe {
  /** Node flags that load the probe. */
  flags: string[];
  /** Environment for the probed process. */
  env: Record<string, string>;
  /** Signals the process and returns what it wrote. */
  read(pid: number): Promise<MemProbeReport>;
}

export interface MemProbeSnapshot {
  rss: number;
  anon: number;
  file: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  spaces: Record<string, { size: number; used: number }>;
}

export interface MemProbeReport {
  before: MemProbeSnapshot;
  afterFullGc: MemProbeSnapshot | null;
}

export const memProbeWanted = (): boolean => process.env.PLEXD_BENCH_MEMPROBE === "1";

/** Writes the probe into `dir` (readable by the probed process's user) and says how to load it. */
export async function makeMemProbe(dir: string, name: string): Promise<MemProbe> {
  const file = join(dir, `memprobe-${name}.mjs`);
  const out = join(dir, `memprobe-${name}.json`);
  await writeFile(file, memprobeSource, { mode: 0o644 });
  return {
    flags: ["--expose-gc", `--import=${file}`],
    env: { PLEXD_MEMPROBE_OUT: out, ...(process.env.PLEXD_BENCH_HEAPSNAPSHOT_DIR ? { PLEXD_MEMPROBE_SNAPSHOT_DIR: process.env.PLEXD_BENCH_HEAPSNAPSHOT_DIR } : {}) },
    async read(pid) {
      rmSync(out, { force: true });
      const before = Date.now();
      process.kill(pid, "SIGUSR2");
      for (;;) {
        try {
          return JSON.parse(readFileSync(out, "utf8")) as MemProbeReport;
        } catch {
          if (Date.now() - before > 60_000) throw new Error(`memory probe of ${pid} wrote nothing to ${out}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    },
  };
}

export function fmtProbe(s: MemProbeSnapshot): string {
  const sp = Object.entries(s.spaces)
    .filter(([, v]) => v.size > 0)
    .map(([k, v]) => `${k.replace(/_space$/, "")} ${v.used}/${v.size}`)
    .join(", ");
  return `rss ${s.rss} (anon ${s.anon}, file ${s.file}); V8 heap used ${s.heapUsed} of ${s.heapTotal}; external ${s.external} (array buffers ${s.arrayBuffers}); spaces used/size: ${sp}`;
}
