import { Session } from "node:inspector/promises";

// In-process CPU profile of a piece of work, summarised as the functions with the most
// inclusive time — enough to say where a cost goes without opening a profiler.

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface HotFunction {
  name: string;
  /** Share of all samples (0-1) with this function on the stack. */
  inclusive: number;
  /** Share of samples with this function on top. */
  self: number;
}

export async function profile(work: () => Promise<void>, top = 15): Promise<HotFunction[]> {
  const session = new Session();
  session.connect();
  try {
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: 200 });
    await session.post("Profiler.start");
    let p: Profile | undefined;
    try {
      await work();
    } finally {
      p = ((await session.post("Profiler.stop")) as unknown as { profile: Profile }).profile;
      await session.post("Profiler.disable");
    }
    return summarise(p, top);
  } finally {
    session.disconnect();
  }
}

function label(n: ProfileNode): string {
  const f = n.callFrame;
  const file = f.url.split("/").slice(-2).join("/");
  return `${f.functionName || "(anonymous)"} ${file}${file ? `:${f.lineNumber + 1}` : ""}`;
}

function summarise(p: Profile, top: number): HotFunction[] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const incl = new Map<string, number>();
  const self = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    total += dt;
    const leaf = byId.get(id);
    if (!leaf) return;
    self.set(label(leaf), (self.get(label(leaf)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const node = byId.get(cur);
      if (!node) break;
      const l = label(node);
      if (seen.has(l)) continue;
      seen.add(l);
      incl.set(l, (incl.get(l) ?? 0) + dt);
    }
  });
  const skip = new Set(["(root) ", "(program) ", "(idle) "]);
  return [...incl]
    .filter(([l]) => !skip.has(l))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, t]) => ({ name, inclusive: t / total, self: (self.get(name) ?? 0) / total }));
}
