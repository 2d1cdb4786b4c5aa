// privhelper unary RPC latency on its unix socket (docs/testing.md#performance-targets: p50 <= 1 ms, p99 <= 10 ms).
// The agent's own client (grpc-js over the unix socket, metadata, deadline) calls GetInfo on
// the built privhelper in a fresh namespace. GetInfo's answer is cached by privhelper
// (capability detection reruns at most every 30 s, and the whole measurement stays well
// inside that window after a warm-up call), so the figure is the RPC path itself: encode,
// socket, server dispatch, handler, decode. ReadMesh of an empty device — which also runs
// one `ip` process and a UAPI get per call — is measured the same way and printed on stderr.
// Two lines: privhelper-rpc-p50 and privhelper-rpc-p99; no floor.
import { create } from "@bufbuild/protobuf";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { MeshSpecSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { startBenchPrivhelper } from "./lib/privhelper.js";
import { printResult } from "./lib/report.js";
import { percentile, summary } from "./lib/stats.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const warmup = 500;
const calls = 5000;
const readMeshCalls = 500;

async function latencies(n: number, call: () => Promise<unknown>, signal: AbortSignal): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n && !signal.aborted; i++) {
    const t = performance.now();
    await call();
    out.push(performance.now() - t);
  }
  return out;
}

export const privhelperRpc: Benchmark = {
  description: `unary GetInfo on privhelper's unix socket through the agent's client: ${calls} sequential calls after ${warmup} warm-up; p50 and p99 (ReadMesh of an empty device on stderr)`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const ph = await startBenchPrivhelper("rpc");
    try {
      await latencies(warmup, () => ph.client.getInfo({}), ctx.signal);
      const t = await latencies(calls, () => ph.client.getInfo({}), ctx.signal);
      ctx.progress(`GetInfo: ${summary(t, 3)} ms`);

      const spec = create(MeshSpecSchema, { interface: ph.iface, privateKey: generateWireGuardKeyPair().privateKey, listenPort: 51820, addresses: ["10.100.0.1/32"] });
      await ph.client.applyMesh({ spec }, { timeoutMs: 60_000 });
      await latencies(50, () => ph.client.readMesh({ interface: ph.iface }), ctx.signal);
      const rm = await latencies(readMeshCalls, () => ph.client.readMesh({ interface: ph.iface }), ctx.signal);
      ctx.progress(`ReadMesh of an empty wireguard-go device (an ip batch exchange + UAPI get per call): ${summary(rm, 2)} ms`);

      if (ctx.signal.aborted) throw new Error("aborted");
      printResult({ name: "privhelper-rpc-p50", value: percentile(t, 50), unit: "ms", floor: null, ratio: null, target: "<=1" });
      return { name: "privhelper-rpc-p99", value: percentile(t, 99), unit: "ms", floor: null, ratio: null, target: "<=10" };
    } finally {
      await ph.close();
    }
  },
};
