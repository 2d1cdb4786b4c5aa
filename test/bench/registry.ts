import { cliStatus } from "./cli-status.js";
import { coldStart } from "./cold-start.js";
import { eventLatency } from "./event-latency.js";
import { eventVerify } from "./event-verify.js";
import { firewallApply } from "./firewall-apply.js";
import { meshApply } from "./mesh-apply.js";
import { meshIncremental } from "./mesh-incremental.js";
import { privhelperRpc } from "./privhelper-rpc.js";
import { reconcileIdle } from "./reconcile-idle.js";
import { reconcileScale } from "./reconcile-scale.js";
import { rssAgent } from "./rss-agent.js";
import { rssPrivhelper } from "./rss-privhelper.js";
import { sandboxStart } from "./sandbox-start.js";
import { actionRoundtrip } from "./action-roundtrip.js";
import { relaySessions } from "./relay-sessions.js";
import { relayThroughput } from "./relay-throughput.js";
import { logForward } from "./log-forward.js";
import { metricsCollect } from "./metrics-collect.js";

// Benchmarks are programs, not timed tests (docs/testing.md). Each one measures its own floor in
// the same run (raw crypto.verify, raw `wg setconf`, raw `nft -f`) so the ratio is meaningful on
// any machine. To add one: write test/bench/<name>.ts exporting a Benchmark and add it here.

export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  /** The reference measured in the same run, or null where there is none. */
  floor: number | null;
  /** value / floor, or null without a floor. */
  ratio: number | null;
  /** The goal restated, e.g. ">=0.7" or "<=1.5". */
  target: string;
  /** Further figures printed in the same JSON line after `target`, e.g. {idle: 61.2}. */
  extra?: Record<string, number>;
}

export interface BenchContext {
  signal: AbortSignal;
  /** Progress for humans; goes to stderr. */
  progress(message: string): void;
}

export interface Benchmark {
  description: string;
  run(ctx: BenchContext): Promise<BenchResult>;
}

export const benchmarks: Record<string, Benchmark> = {
  "event-verify": eventVerify,
  "firewall-apply": firewallApply,
  "reconcile-idle": reconcileIdle,
  "mesh-apply": meshApply,
  "mesh-incremental": meshIncremental,
  "privhelper-rpc": privhelperRpc,
  "reconcile-scale": reconcileScale,
  "event-latency": eventLatency,
  "cli-status": cliStatus,
  "cold-start": coldStart,
  "rss-privhelper": rssPrivhelper,
  "rss-agent": rssAgent,
  "action-roundtrip": actionRoundtrip,
  "sandbox-start": sandboxStart,
  "relay-sessions": relaySessions,
  "relay-throughput": relayThroughput,
  "log-forward": logForward,
  "metrics-collect": metricsCollect,
};
