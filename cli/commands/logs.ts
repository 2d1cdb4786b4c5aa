import { setTimeout as sleep } from "node:timers/promises";
import type { ForwardedLogLine } from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { NodeClient } from "../client.js";
import { UsageError } from "../usage-error.js";

// `plexd logs`: the lines this agent forwarded lately (journald and files), oldest first;
// with --follow, new ones as they are read (docs/telemetry.md#logs).

export function logLineText(l: ForwardedLogLine): string {
  const from = l.source === "journald" ? l.unit || "journald" : l.path;
  return `${l.timestamp} ${from} ${l.severity}: ${l.message}`;
}

const lineJson = (l: ForwardedLogLine): string =>
  JSON.stringify({ seq: Number(l.seq), timestamp: l.timestamp, source: l.source, unit: l.unit, ...(l.path === "" ? {} : { path: l.path }), message: l.message, severity: l.severity });

export async function logs(client: NodeClient, json: boolean, opts: { lines: string; follow: boolean }, signal?: AbortSignal): Promise<void> {
  const n = Number(opts.lines);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new UsageError(`--lines must be 1-1000, got ${JSON.stringify(opts.lines)}`);
  let after = 0n;
  const print = (ls: ForwardedLogLine[]): void => {
    for (const l of ls) {
      console.log(json ? lineJson(l) : logLineText(l));
      after = l.seq;
    }
  };
  print((await client.agent.tailLogs({ afterSeq: 0n, limit: n })).lines);
  // The agent keeps the latest lines; following polls for those after the last one printed.
  const stopped = (): boolean => signal?.aborted === true;
  while (opts.follow && !stopped()) {
    await sleep(1000, undefined, signal ? { signal } : {}).catch(() => undefined);
    if (stopped()) break;
    print((await client.agent.tailLogs({ afterSeq: after, limit: 1000 })).lines);
  }
}
