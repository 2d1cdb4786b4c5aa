// sandbox-start (issue 18: RunSandboxed of /bin/true in the namespaced sandbox within 2× of
// `unshare --pid --mount --fork /bin/true` run directly, in the same run). The RPC is the
// agent's own client to the built privhelper: check and hash of the file, the account lookup,
// bubblewrap (mount + PID namespaces, read-only root, /dev, /proc) and setpriv, then /bin/true
// from the hashed descriptor. The floor is the bare namespace creation with util-linux's
// unshare, spawned by this process. Runs alternate so that machine noise hits both alike.
import { copyFileSync, chmodSync, mkdirSync } from "node:fs";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { makeTempDir } from "../e2e/harness/index.js";
import { startBenchPrivhelper } from "./lib/privhelper.js";
import { percentile, summary } from "./lib/stats.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const warmup = 5;
const runs = 60;

export const sandboxStart: Benchmark = {
  description: `RunSandboxed of /bin/true (namespaced: bubblewrap + setpriv, as nobody) through privhelper's socket vs \`unshare --pid --mount --fork /bin/true\` spawned directly; ${runs} alternating runs each after ${warmup} warm-up; p50 ratio`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const hooksDir = join(makeTempDir("bench-hooks", { mode: 0o755 }), "hooks.d");
    mkdirSync(hooksDir, { mode: 0o755 });
    const path = join(hooksDir, "true");
    copyFileSync("/bin/true", path);
    chmodSync(path, 0o755);
    const checksum = `sha256:${createHash("sha256").update(readFileSync(path)).digest("hex")}`;
    const ph = await startBenchPrivhelper("sandbox", { hooksDir });
    try {
      const sandboxed = async () => {
        const r = await ph.client.runSandboxed({ path, checksum, user: "nobody", sandbox: "namespaced", writablePaths: ["/tmp"], mountProc: true, timeoutMs: 10_000, maxOutputBytes: 65536 }, { timeoutMs: 30_000 });
        if (r.exitCode !== 0) throw new Error(`RunSandboxed: exit ${r.exitCode}: ${r.stderr}`);
      };
      const direct = async () => {
        await execa("unshare", ["--pid", "--mount", "--fork", "/bin/true"]);
      };
      // Where the time goes: the RPC path alone (HashFiles of the same file: peer check, gate,
      // open + hash), and bubblewrap + setpriv with the same arguments spawned from here.
      const rpc = async () => {
        await ph.client.hashFiles({ paths: [path] }, { timeoutMs: 30_000 });
      };
      const dev = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"].flatMap((d) => ["--dev-bind", d, d]);
      const tools = async () => {
        await execa("bwrap", ["--ro-bind", "/", "/", "--bind", "/tmp", "/tmp", "--tmpfs", "/dev", ...dev, "--proc", "/proc", "--unshare-pid", "--die-with-parent", "--chdir", "/", "--", "setpriv", "--reuid", "65534", "--regid", "65534", "--init-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--", path]);
      };
      const a: number[] = [];
      const b: number[] = [];
      const c: number[] = [];
      const d: number[] = [];
      for (let i = 0; i < warmup + runs && !ctx.signal.aborted; i++) {
        for (const [fn, out] of [[sandboxed, a], [direct, b], [rpc, c], [tools, d]] as const) {
          const t = performance.now();
          await fn();
          if (i >= warmup) out.push(performance.now() - t);
        }
      }
      if (ctx.signal.aborted) throw new Error("aborted");
      ctx.progress(`RunSandboxed namespaced /bin/true: ${summary(a)} ms`);
      ctx.progress(`unshare --pid --mount --fork /bin/true: ${summary(b)} ms`);
      ctx.progress(`HashFiles of the same file (the RPC path alone): ${summary(c)} ms`);
      ctx.progress(`bwrap + setpriv with the same arguments, spawned directly: ${summary(d)} ms`);
      const [value, floor] = [percentile(a, 50), percentile(b, 50)];
      return { name: "sandbox-start", value, unit: "ms", floor, ratio: value / floor, target: "<=2" };
    } catch (err) {
      ctx.progress(`privhelper log tail:\n${ph.output().split("\n").slice(-15).join("\n")}`);
      throw err;
    } finally {
      await ph.close();
    }
  },
};
