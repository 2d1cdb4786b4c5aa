// One no-drift reconcile cycle with 1,000 peers and 10,000 rules (issue: reconcile-idle).
// The agent's kernel reconciler renders both targets, reads the live device and table back
// through privhelper (ReadMesh, ReadFirewall), compares, and sends the two declarative
// applies, which privhelper answers as no-ops. Reported: the agent's CPU time for one cycle
// (median); privhelper's CPU time and the wall time go to stderr. There is no floor: the
// spec asks for the figure, not a ratio.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { parseConfig } from "../../agent/config/schema.js";
import { HealthRegistry } from "../../agent/health/registry.js";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { connectPrivhelper } from "../../agent/privclient/client.js";
import { KernelReconciler } from "../../agent/reconcile/kernel.js";
import { DesiredStateStore } from "../../agent/state/desired.js";
import { createLogger } from "../../agent/util/log.js";
import { bundleArgv } from "../e2e/lib/bundle-argv.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const peerCount = 1000;
const ruleCount = 10_000;
const cycles = 7;

function privhelperPath(): string {
  const here = fileURLToPath(new URL("./plexd-privhelper.js", import.meta.url));
  return existsSync(here) ? here : join(process.cwd(), "dist", "plexd-privhelper.js");
}

/** utime + stime of a process, in ms (clock ticks are 100 Hz on Linux). */
function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export const reconcileIdle: Benchmark = {
  description: `CPU time of one no-drift reconcile cycle (render, ReadMesh + ReadFirewall, compare, two no-op applies) with ${peerCount} peers and ${ruleCount} rules`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const tag = randomBytes(3).toString("hex");
    const ns = `pxidle-${tag}`;
    const iface = `plexd${tag}`;
    const work = await mkdtemp(join(tmpdir(), "plexd-idlebench-"));
    let helper: ChildProcess | undefined;
    const ac = new AbortController();
    const client = connectPrivhelper({ socketPath: join(work, "run", "privhelper.sock") });
    try {
      await writeFile(join(work, "config.yaml"), `mesh:\n  interface: ${iface}\n`);
      await execa("ip", ["netns", "add", ns]);
      helper = spawn("ip", ["netns", "exec", ns, ...bundleArgv(dirname(privhelperPath()), "plexd-privhelper"), "--config", join(work, "config.yaml"), "--socket", join(work, "run", "privhelper.sock"), "--group", "root", "--log-level", "warn"], {
        stdio: ["ignore", "ignore", "inherit"],
      });
      await client.waitReady({ timeoutMs: 15_000 });
      const info = await client.getInfo({});

      const config = parseConfig({ api: "http://127.0.0.1:1", data_dir: work, mesh: { interface: iface }, policy: { default: "deny", log_denied: true } });
      const store = await DesiredStateStore.open(work);
      const local = generateWireGuardKeyPair();
      store.update((s) => {
        for (let i = 0; i < peerCount; i++) {
          const id = `n_${i}`;
          s.peers[id] = { id, public_key: generateWireGuardKeyPair().publicKey, mesh_ip: `10.100.${(i + 2) >> 8}.${(i + 2) & 255}`, endpoint: `192.0.2.${(i % 250) + 2}:51820`, allowed_ips: [], psk: randomBytes(32).toString("base64") };
        }
        const rules = Array.from({ length: ruleCount }, (_, i) => ({ src: `n_${i % peerCount}`, dst: "n_local", port: 1024 + i, protocol: i % 2 ? "udp" : "tcp", action: "allow" }));
        s.policies = [{ id: "bench", rules }];
        return ["peers", "policies"];
      });
      const kernel = new KernelReconciler({
        priv: client,
        store,
        config,
        local: () => ({ nodeId: "n_local", meshIp: "10.100.0.1", privateKey: local.privateKey }),
        health: new HealthRegistry(),
        log: createLogger({ name: "bench", level: "warn" }),
        signal: ac.signal,
        now: () => Date.now(),
      });
      ctx.progress("first apply (creates the device, 1,000 peers, 10,000 rules)...");
      await kernel.converge(false, "bench-setup");
      const agentMs: number[] = [];
      const helperMs: number[] = [];
      const wallMs: number[] = [];
      for (let i = 0; i < cycles; i++) {
        const c0 = process.cpuUsage();
        const h0 = processCpuMs(info.pid);
        const t0 = performance.now();
        const r = await kernel.converge(true, "bench");
        wallMs.push(performance.now() - t0);
        const c = process.cpuUsage(c0);
        agentMs.push((c.user + c.system) / 1000);
        helperMs.push(processCpuMs(info.pid) - h0);
        if (r.corrections.length > 0 || r.meshChanged || r.firewallChanged) throw new Error(`cycle found drift: ${JSON.stringify(r.corrections.slice(0, 3))}`);
        ctx.progress(`cycle ${i + 1}/${cycles}: agent CPU ${agentMs.at(-1)!.toFixed(1)} ms, privhelper CPU ${helperMs.at(-1)} ms, wall ${wallMs.at(-1)!.toFixed(0)} ms`);
      }
      ctx.progress(`medians: agent CPU ${median(agentMs).toFixed(1)} ms, privhelper CPU ${median(helperMs)} ms, wall ${median(wallMs).toFixed(0)} ms`);
      return { name: "reconcile-idle", value: Math.round(median(agentMs) * 10) / 10, unit: "ms agent CPU per cycle", floor: null, ratio: null, target: "report" };
    } finally {
      ac.abort();
      await client.teardown({}, { timeoutMs: 30_000 }).catch(() => undefined);
      client.close();
      if (helper?.pid !== undefined && helper.exitCode === null) {
        const exited = new Promise((r) => helper!.once("exit", r));
        helper.kill("SIGTERM");
        const timer = setTimeout(() => helper!.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      await execa("ip", ["netns", "del", ns], { reject: false });
      await rm(work, { recursive: true, force: true });
    }
  },
};
