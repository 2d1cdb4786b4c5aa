import { readFile, statfs } from "node:fs/promises";
import { loadavg } from "node:os";

// node_resources (docs/telemetry.md#metrics): read straight from /proc and statfs by the
// agent itself; none of it needs privileges.

export interface NodeResources {
  cpu_percent: number;
  memory_used_bytes: number;
  memory_total_bytes: number;
  disk_used_bytes: number;
  disk_total_bytes: number;
  load_avg_1: number;
  load_avg_5: number;
  load_avg_15: number;
  network_rx_bytes: number;
  network_tx_bytes: number;
}

/** Busy and total jiffies of the "cpu" line of /proc/stat. */
export function parseProcStat(text: string): { busy: number; total: number } {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (line === undefined) throw new Error("/proc/stat has no cpu line");
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest is already inside user)
  const total = v.slice(0, 8).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** MemTotal and MemAvailable in bytes. */
export function parseMeminfo(text: string): { total: number; available: number } {
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    if (m === null) throw new Error(`/proc/meminfo has no ${key}`);
    return Number(m[1]) * 1024;
  };
  return { total: kb("MemTotal"), available: kb("MemAvailable") };
}

/** Cumulative rx/tx bytes over every interface except loopback. */
export function parseNetDev(text: string): { rx: number; tx: number } {
  let rx = 0;
  let tx = 0;
  for (const line of text.split("\n").slice(2)) {
    const m = /^\s*([^:]+):\s*(.*)$/.exec(line);
    if (m === null || m[1] === "lo") continue;
    const f = (m[2] ?? "").trim().split(/\s+/).map(Number);
    rx += f[0] ?? 0;
    tx += f[8] ?? 0;
  }
  return { rx, tx };
}

export class NodeResourcesCollector {
  #last: { busy: number; total: number } | undefined;
  readonly #dataDir: string;
  readonly #proc: string;

  constructor(dataDir: string, procRoot = "/proc") {
    this.#dataDir = dataDir;
    this.#proc = procRoot;
  }

  /** Takes the CPU baseline, so the first point already has a meaningful cpu_percent. */
  async start(): Promise<void> {
    this.#last = parseProcStat(await readFile(`${this.#proc}/stat`, "utf8"));
  }

  async collect(): Promise<NodeResources> {
    const [stat, mem, net, fs] = await Promise.all([
      readFile(`${this.#proc}/stat`, "utf8").then(parseProcStat),
      readFile(`${this.#proc}/meminfo`, "utf8").then(parseMeminfo),
      readFile(`${this.#proc}/net/dev`, "utf8").then(parseNetDev),
      statfs(this.#dataDir),
    ]);
    const prev = this.#last ?? stat;
    this.#last = stat;
    const dt = stat.total - prev.total;
    const cpu = dt > 0 ? Math.round(((stat.busy - prev.busy) / dt) * 10_000) / 100 : 0;
    const [l1, l5, l15] = loadavg();
    const total = fs.blocks * fs.bsize;
    return {
      cpu_percent: cpu,
      memory_used_bytes: mem.total - mem.available,
      memory_total_bytes: mem.total,
      disk_used_bytes: total - fs.bfree * fs.bsize,
      disk_total_bytes: total,
      load_avg_1: l1 ?? 0,
      load_avg_5: l5 ?? 0,
      load_avg_15: l15 ?? 0,
      network_rx_bytes: net.rx,
      network_tx_bytes: net.tx,
    };
  }
}
