// action-roundtrip (issue 18: action_request at mockcp -> result received for system.info,
// p50 <= 50 ms). The whole path is real: mockcp (hub namespace, TLS) signs the request and
// sends it over SSE to the agent (`plexd up` as user plexd in its own namespace: verify,
// replay journal, admission, executed-id memory written durably, ack, the built-in, result
// persisted under executions/pending, POST), and mockcp records the result. Measured per
// request: from just before the control-API push to mockcp's own received_at of the result
// (1 ms clock, same machine). Requests go one at a time.
import { randomBytes } from "node:crypto";
import { cleanupMark, cleanupSince, createTopology, ensureSystemUsers } from "../e2e/harness/index.js";
import { cpPort, startCpOnHub } from "../e2e/lib/cp.js";
import { identityOf } from "../e2e/lib/mesh.js";
import { createNode, type PlexdNode } from "../e2e/lib/node.js";
import { agentNodeFlags } from "./lib/node-flags.js";
import { printResult } from "./lib/report.js";
import { percentile, summary } from "./lib/stats.js";
import { waitFor } from "./lib/wait.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const requests = 100;
const warmup = 5;

export const actionRoundtrip: Benchmark = {
  description: `system.info pushed at mockcp -> result recorded by mockcp (real TLS/SSE, agent as user plexd, privhelper; ${requests} sequential requests after ${warmup} warm-up); p50 and p99`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const mark = cleanupMark();
    let node: PlexdNode | undefined;
    try {
      const users = await ensureSystemUsers();
      const name = `act${randomBytes(3).toString("hex")}`;
      const topo = await createTopology({ nodes: [name] });
      const cp = await startCpOnHub(topo);
      const { token } = await cp.client.createToken();
      node = createNode({ name, ns: topo.node(name).ns, api: `https://${topo.hub.ip}:${cpPort}`, caFile: cp.caFile, users, token, config: { nat_traversal: { enabled: false }, reconcile: { interval: "1h" } } });
      const n = node;
      await n.startPrivhelper();
      n.startAgent([], { nodeFlags: agentNodeFlags() });
      const id = await waitFor("registration", () => identityOf(n).node_id, 60_000, ctx.signal);
      await waitFor("event stream", async () => ((await cp.client.listNodes()).find((x) => x.id === id)?.streams ?? 0) > 0 || undefined, 60_000, ctx.signal);
      const lat: number[] = [];
      for (let i = 0; i < warmup + requests && !ctx.signal.aborted; i++) {
        const t0 = Date.now();
        const { execution_id } = await cp.client.pushAction(id, { action: "system.info" });
        const rec = await cp.client.waitForResult(id, execution_id, { timeoutMs: 15_000 });
        if ((rec.result!.body as { status: string }).status !== "success") throw new Error(`system.info: ${JSON.stringify(rec.result!.body)}`);
        if (i >= warmup) lat.push(Date.parse(rec.result!.received_at) - t0);
      }
      if (ctx.signal.aborted) throw new Error("aborted");
      ctx.progress(`push -> result received: ${summary(lat)} ms`);
      printResult({ name: "action-roundtrip-p50", value: percentile(lat, 50), unit: "ms", floor: null, ratio: null, target: "<=50" }, 1);
      return { name: "action-roundtrip-p99", value: percentile(lat, 99), unit: "ms", floor: null, ratio: null, target: "" };
    } catch (err) {
      if (node) ctx.progress(`agent log tail:\n${(node.agent?.output() ?? "").split("\n").slice(-15).join("\n")}`);
      throw err;
    } finally {
      await cleanupSince(mark);
    }
  },
};
