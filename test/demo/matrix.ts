import { ping } from "../e2e/harness/index.js";

// Every node pings every other over the mesh; printed as a table (row pings column).

export interface MatrixNode {
  name: string;
  ns: string;
  meshIp: string;
}

export interface PingMatrix {
  lines: string[];
  pairs: number;
  answered: number;
  /** Some pair needed more than 3 pings (they waited for a handshake). */
  queued: boolean;
}

export async function pingMatrix(nodes: readonly MatrixNode[]): Promise<PingMatrix> {
  const cells = new Map<string, string>();
  let answered = 0;
  let queued = false;
  for (const from of nodes) {
    for (const to of nodes) {
      if (from === to) continue;
      // ping keeps sending until 3 replies or the deadline: a first packet lost while a
      // handshake completes shows as 3/4, not as a failure.
      const r = await ping(from.ns, to.meshIp, { count: 3, timeoutMs: 10_000 });
      cells.set(`${from.name}>${to.name}`, r.ok ? `${r.received}/${r.transmitted}` : `FAIL ${r.received}/${r.transmitted}`);
      if (r.ok) answered++;
      if (r.transmitted > 3) queued = true;
    }
  }
  const width = Math.max(8, ...nodes.map((n) => Math.max(n.name.length, n.meshIp.length) + 2), ...[...cells.values()].map((c) => c.length + 2));
  const row = (first: string, rest: string[]): string => [first.padEnd(width), ...rest.map((c) => c.padEnd(width))].join("").trimEnd();
  const lines = [
    row("from\\to", nodes.map((n) => `${n.name}`)),
    row("", nodes.map((n) => n.meshIp)),
    ...nodes.map((from) => row(from.name, nodes.map((to) => (from === to ? "-" : cells.get(`${from.name}>${to.name}`)!)))),
  ];
  return { lines, pairs: nodes.length * (nodes.length - 1), answered, queued };
}
