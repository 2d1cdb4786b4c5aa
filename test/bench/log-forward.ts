// log-forward (docs/telemetry.md#logs): lines per second from a tailed file to mockcp's logs
// ingestion, everything real: the agent (`plexd up` as user plexd in its namespace) tails the
// file, its logs pipeline gzips and posts batches of 1,000 lines to mockcp (TLS, hub
// namespace), which decodes and checks every line. The writer appends the next 10,000 lines
// whenever fewer than 20,000 are written but not delivered, so the ring never overflows and the
// figure is the sustained rate with memory bounded (nothing dropped: checked). Floor, same
// run: `cat FILE | gzip` of the same lines (lines/s). RSS growth: the agent's VmRSS peak while
// forwarding over its idle VmRSS just before. CPU per line of the agent and of mockcp (user +
// system, all threads) is printed too: on a shared machine it moves much less with the load
// than lines/s does.
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { createNodeClient } from "../../cli/client.js";
import { cleanupMark, cleanupSince, createTopology, ensureSystemUsers, makeTempDir, run } from "../e2e/harness/index.js";
import { cpPort, startCpOnHub } from "../e2e/lib/cp.js";
import { identityOf } from "../e2e/lib/mesh.js";
import { createNode } from "../e2e/lib/node.js";
import { rssOf } from "./lib/rss.js";
import { sleep, waitFor } from "./lib/wait.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const totalLines = 400_000;

/** User + system CPU seconds of a process so far (/proc/PID/stat, clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}
const chunkLines = 10_000;

/** Lines like an application log: timestamp, level, component, a message with numbers. */
function makeLines(n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`2026-12-03T19:00:${String(i % 60).padStart(2, "0")}.${String(i % 1000).padStart(3, "0")}Z INFO app.worker[${i % 17}] request ${i} served in ${(i * 7) % 1000} ms status=200 bytes=${(i * 13) % 65536}\n`);
  return out.join("");
}

export const logForward: Benchmark = {
  description: `lines/s from a tailed file to mockcp's logs ingestion (${totalLines} lines, real agent and mockcp) vs \`cat FILE | gzip\` of the same lines`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const mark = cleanupMark();
    try {
      const dir = makeTempDir("log-forward", { mode: 0o755 });
      const chunk = makeLines(chunkLines);
      const source = join(dir, "source.log");
      writeFileSync(source, chunk.repeat(totalLines / chunkLines));
      let t = performance.now();
      await run(["sh", "-c", `cat '${source}' | gzip > /dev/null`]);
      const floorSeconds = (performance.now() - t) / 1000;
      const floor = totalLines / floorSeconds;
      ctx.progress(`floor: cat | gzip of ${totalLines} lines (${(readFileSync(source).length / 1e6).toFixed(1)} MB) in ${floorSeconds.toFixed(2)} s = ${Math.round(floor)} lines/s`);

      const users = await ensureSystemUsers();
      const name = `lf${randomBytes(3).toString("hex")}`;
      const topo = await createTopology({ nodes: [name] });
      const cp = await startCpOnHub(topo);
      const file = join(dir, "app.log");
      writeFileSync(file, "", { mode: 0o644 });
      const { token } = await cp.client.createToken();
      const n = createNode({
        name,
        ns: topo.node(name).ns,
        api: `https://${topo.hub.ip}:${cpPort}`,
        caFile: cp.caFile,
        users,
        token,
        // The ring holds more than the writer ever leaves outstanding (2 chunks): nothing is dropped.
        config: { logs: { sources: [file], batch_interval: "1s", buffer_size: 50_000 }, observe: { enabled: false }, audit: { enabled: false } },
      });
      await n.startPrivhelper();
      // PLEXD_BENCH_CPU_PROF=DIR: the agent writes a V8 CPU profile there (where the time goes).
      const profDir = process.env.PLEXD_BENCH_CPU_PROF;
      const agent = n.startAgent([], profDir ? { nodeFlags: ["--cpu-prof", `--cpu-prof-dir=${profDir}`] } : {});
      await waitFor("registration", () => identityOf(n).node_id, 60_000, ctx.signal, 200);
      const api = createNodeClient(n.apiSocket);
      const logsPipeline = async () => (await api.agent.getStatus({})).pipelines.find((p) => p.name === "logs");
      await waitFor("file tailed", async () => ((await api.agent.getLogStatus({})).sourceDetails.some((s) => s.state === "reading") ? true : undefined), 30_000, ctx.signal, 200);
      await sleep(5000);
      const idle = rssOf(agent.pid).rss;
      ctx.progress(`agent idle: ${idle.toFixed(1)} MB`);

      let written = 0;
      let peak = idle;
      const cpu0 = { agent: cpuSeconds(agent.pid), cp: cpuSeconds(cp.pid) };
      t = performance.now();
      for (;;) {
        const p = await logsPipeline();
        if (p === undefined) throw new Error("the agent has no logs pipeline");
        peak = Math.max(peak, rssOf(agent.pid).rss);
        if (Number(p.sentTotal) >= totalLines) break;
        // Written but not yet delivered: unread in the file, or in the ring.
        if (written < totalLines && written - Number(p.sentTotal) < 2 * chunkLines) {
          appendFileSync(file, chunk);
          written += chunkLines;
        }
        if (ctx.signal.aborted) throw new Error("aborted");
        if (performance.now() - t > 600_000) throw new Error(`only ${p.sentTotal} of ${totalLines} lines delivered in 10 minutes`);
        await sleep(20);
      }
      const seconds = (performance.now() - t) / 1000;
      const cpu = { agent: cpuSeconds(agent.pid) - cpu0.agent, cp: cpuSeconds(cp.pid) - cpu0.cp };
      const perLine = { agent: (cpu.agent * 1e6) / totalLines, cp: (cpu.cp * 1e6) / totalLines };
      ctx.progress(`CPU over the run: agent ${cpu.agent.toFixed(2)} s = ${perLine.agent.toFixed(1)} µs/line, mockcp ${cpu.cp.toFixed(2)} s = ${perLine.cp.toFixed(1)} µs/line, wall ${seconds.toFixed(1)} s`);
      const p = (await logsPipeline())!;
      const value = totalLines / seconds;
      ctx.progress(`${totalLines} lines delivered in ${seconds.toFixed(2)} s = ${Math.round(value)} lines/s in ${p.sentBatchesTotal} batches; dropped ${p.droppedOverflowTotal}; agent RSS peak ${peak.toFixed(1)} MB (+${(peak - idle).toFixed(1)} over idle)`);
      if (Number(p.droppedOverflowTotal) !== 0) throw new Error(`${p.droppedOverflowTotal} lines dropped: the writer outran the ring`);
      await agent.kill("SIGTERM");
      return { name: "log-forward", value, unit: "lines/s", floor, ratio: value / floor, target: ">=100000 lines/s, rss growth <=20 MB", extra: { rss_growth_mb: peak - idle, idle_rss_mb: idle, agent_cpu_s: cpu.agent, mockcp_cpu_s: cpu.cp, agent_cpu_us_per_line: perLine.agent, mockcp_cpu_us_per_line: perLine.cp } };
    } finally {
      await cleanupSince(mark);
    }
  },
};
