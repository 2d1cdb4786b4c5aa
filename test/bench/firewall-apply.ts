// Firewall apply, 10,000 policy rules (docs/testing.md#performance-targets: <= 1.3 x raw `nft -f` of the same
// ruleset). The agent's compiler turns 10,000 allow rules into a FirewallSpec; the built
// privhelper, running inside a fresh network namespace, applies it through its socket
// (gRPC, allow-list validation, reading the live table, planning, rendering, one
// `nft -f -`). The floor is `nft -f FILE` of exactly the script privhelper renders, run in
// the same namespace. Each measurement starts from an empty namespace (no table inet
// plexd), alternating value and floor so both see the same host load; medians are
// reported. Progress goes to stderr, the namespace and privhelper are removed at the end.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { execa } from "execa";
import { compilePolicy, type PolicyInput } from "../../agent/policy/compile.js";
import { connectPrivhelper } from "../../agent/privclient/client.js";
import { FirewallSpecSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { privConfigFrom } from "../../privhelper/config.js";
import { renderScript } from "../../privhelper/firewall/render.js";
import { validateFirewallSpec } from "../../privhelper/firewall/validate.js";
import { bundleArgv } from "../e2e/lib/bundle-argv.js";
import { privhelperNodeFlags } from "./lib/node-flags.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const ruleCount = 10_000;
const pairs = 9;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** The privhelper bundle: beside this bundle in dist/, or dist/ from the repository root. */
function privhelperPath(): string {
  const here = fileURLToPath(new URL("./plexd-privhelper.js", import.meta.url));
  return existsSync(here) ? here : join(process.cwd(), "dist", "plexd-privhelper.js");
}

export function benchPolicies(n: number): { policies: PolicyInput[]; peers: { id: string; mesh_ip: string }[] } {
  const peers = Array.from({ length: n }, (_, i) => ({ id: `n_${i.toString(36).padStart(6, "0")}`, mesh_ip: `10.100.${((i + 2) >> 8) & 0xff}.${(i + 2) & 0xff}` }));
  const rules = peers.map((p, i) => ({ src: p.id, dst: "n_local", port: 1024 + (i % 40_000), protocol: i % 2 ? "udp" : "tcp", action: i % 10 === 0 ? "deny" : "allow" }));
  // Several policies, so sorting by policy id and rule index is exercised too.
  const policies: PolicyInput[] = [];
  for (let i = 0; i < rules.length; i += 1000) policies.push({ id: `pol-${String(i / 1000).padStart(3, "0")}`, rules: rules.slice(i, i + 1000) });
  return { policies, peers };
}

export const firewallApply: Benchmark = {
  description: `ApplyFirewall of ${ruleCount} compiled policy rules through privhelper vs raw nft -f of the same script (fresh namespace, ${pairs} interleaved pairs, medians)`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const tag = randomBytes(3).toString("hex");
    const ns = `pxfwbench-${tag}`;
    const work = await mkdtemp(join(tmpdir(), "plexd-fwbench-"));
    let helper: ChildProcess | undefined;
    let client: ReturnType<typeof connectPrivhelper> | undefined;
    const inNs = (argv: string[], reject = true) => execa("ip", ["netns", "exec", ns, ...argv], { reject, timeout: 180_000 });
    try {
      const { policies, peers } = benchPolicies(ruleCount);
      const t0 = performance.now();
      const compiled = compilePolicy({
        policies,
        local: { id: "n_local", meshIp: "10.100.0.1" },
        peers,
        config: { enabled: true, default: "deny", logDenied: true, meshInterface: "plexd0", mode: "node" },
      });
      // The request message is built once, as the agent's reconciler would after compiling;
      // the timed path starts at the RPC (encode, socket, privhelper, nft).
      const spec = create(FirewallSpecSchema, compiled.firewall!);
      const total = spec.chains.reduce((n, c) => n + c.rules.length, 0);
      ctx.progress(`compiled ${ruleCount} policy rules into ${total} nft rules (+ request message) in ${(performance.now() - t0).toFixed(1)} ms (${compiled.invalidRules.length} invalid)`);

      const config = privConfigFrom({ mesh: { interface: "plexd0" } });
      const script = renderScript(validateFirewallSpec(config, spec));
      const scriptFile = join(work, "ruleset.nft");
      await writeFile(scriptFile, script);
      const configFile = join(work, "config.yaml");
      await writeFile(configFile, "mesh:\n  interface: plexd0\n");
      const sock = join(work, "run", "privhelper.sock");

      await execa("ip", ["netns", "add", ns]);
      helper = spawn("ip", ["netns", "exec", ns, ...bundleArgv(dirname(privhelperPath()), "plexd-privhelper", privhelperNodeFlags()), "--config", configFile, "--socket", sock, "--group", "root", "--log-level", "warn"], {
        stdio: ["ignore", "ignore", "inherit"],
      });
      client = connectPrivhelper({ socketPath: sock });
      const until = Date.now() + 15_000;
      while (!existsSync(sock)) {
        if (helper.exitCode !== null || Date.now() > until) throw new Error("privhelper did not start");
        await new Promise((r) => setTimeout(r, 50));
      }
      await client.waitReady({ timeoutMs: 15_000 });

      const reset = async () => {
        await inNs(["nft", "delete", "table", "inet", "plexd"], false);
      };
      const values: number[] = [];
      const floors: number[] = [];
      for (let i = 0; i < pairs && !ctx.signal.aborted; i++) {
        await reset();
        let t = performance.now();
        await inNs(["nft", "-f", scriptFile]);
        floors.push(performance.now() - t);
        await reset();
        t = performance.now();
        const res = await client.applyFirewall({ spec }, { timeoutMs: 180_000, signal: ctx.signal });
        values.push(performance.now() - t);
        if (!res.result?.changed || res.result.failedStep) throw new Error(`apply did not apply: ${JSON.stringify(res.result)}`);
        ctx.progress(`pair ${i + 1}/${pairs}: privhelper ${values.at(-1)!.toFixed(0)} ms, nft -f ${floors.at(-1)!.toFixed(0)} ms`);
      }
      // Sanity: what privhelper left is the spec (re-apply is a no-op).
      const again = await client.applyFirewall({ spec }, { timeoutMs: 180_000 });
      if (again.result?.changed) throw new Error("re-apply of the same spec changed the table");
      const value = median(values);
      const floor = median(floors);
      return { name: "firewall-apply", value, unit: "ms", floor, ratio: value / floor, target: "<=1.3" };
    } finally {
      client?.close();
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
