import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { connectPrivhelper, type PrivClient } from "../../../agent/privclient/client.js";

// A throw-away privhelper for benchmarks: its own network namespace, config and socket,
// removed (with whatever plexd created in it) by `close()`.

export interface BenchPrivhelper {
  ns: string;
  iface: string;
  work: string;
  client: PrivClient;
  pid: number;
  inNs(argv: string[]): Promise<string>;
  close(): Promise<void>;
}

function privhelperPath(): string {
  const here = fileURLToPath(new URL("./plexd-privhelper.js", import.meta.url));
  return existsSync(here) ? here : join(process.cwd(), "dist", "plexd-privhelper.js");
}

export async function startBenchPrivhelper(prefix: string): Promise<BenchPrivhelper> {
  const tag = randomBytes(3).toString("hex");
  const ns = `px${prefix}-${tag}`;
  // Unique: wireguard-go's UAPI socket path is shared by every namespace.
  const iface = `plexd${tag}`;
  const work = await mkdtemp(join(tmpdir(), `plexd-${prefix}-`));
  const sock = join(work, "run", "privhelper.sock");
  await writeFile(join(work, "config.yaml"), `mesh:\n  interface: ${iface}\n`);
  await execa("ip", ["netns", "add", ns]);
  await execa("ip", ["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
  const helper: ChildProcess = spawn("ip", ["netns", "exec", ns, process.execPath, privhelperPath(), "--config", join(work, "config.yaml"), "--socket", sock, "--group", "root", "--log-level", "warn"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const client = connectPrivhelper({ socketPath: sock });
  const close = async (): Promise<void> => {
    await client.teardown({}, { timeoutMs: 30_000 }).catch(() => undefined);
    client.close();
    if (helper.pid !== undefined && helper.exitCode === null) {
      const exited = new Promise((r) => helper.once("exit", r));
      helper.kill("SIGTERM");
      const timer = setTimeout(() => helper.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await execa("ip", ["netns", "del", ns], { reject: false });
    await rm(work, { recursive: true, force: true });
  };
  try {
    await client.waitReady({ timeoutMs: 15_000 });
    const info = await client.getInfo({});
    return { ns, iface, work, client, pid: info.pid, inNs: async (argv) => (await execa("ip", ["netns", "exec", ns, ...argv], { timeout: 120_000 })).stdout, close };
  } catch (err) {
    await close();
    throw err;
  }
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
export const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
