import { spawn, type ChildProcess } from "node:child_process";
import { createInterface, type Interface } from "node:readline";
import type { RelaySessionInput } from "../../../agent/bridge/relay-engine.js";
import { relayChildFlag } from "./relay-child.js";

// Drives a relay child (lib/relay-child.ts) from a benchmark: spawn, replace sessions, read stats.

export interface RelayStats {
  cpu_us: number;
  packets: number;
  bytes: number;
  unknown: number;
  sessions: number;
}

export interface RelayChild {
  setSessions(sessions: RelaySessionInput[]): Promise<void>;
  stats(): Promise<RelayStats>;
  stop(): Promise<void>;
}

/** `prefix` runs the child elsewhere, e.g. `["ip", "netns", "exec", NS]`. */
export async function startRelayChild(port: number, prefix: readonly string[] = []): Promise<RelayChild> {
  const argv = [...prefix, process.execPath, process.argv[1]!, relayChildFlag, String(port)];
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "inherit"] });
  const lines: Interface = createInterface({ input: child.stdout! });
  const waiting: { resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  let exitCode: number | null | undefined;
  lines.on("line", (l) => waiting.shift()?.resolve(l));
  child.once("exit", (code) => {
    exitCode = code;
    for (const w of waiting.splice(0)) w.reject(new Error(`relay child exited (${code})`));
  });
  const next = () =>
    new Promise<string>((resolve, reject) => {
      if (exitCode !== undefined) reject(new Error(`relay child exited (${exitCode})`));
      else waiting.push({ resolve, reject });
    });
  await next();
  const ask = async (cmd: unknown): Promise<string> => {
    const p = next();
    child.stdin!.write(`${JSON.stringify(cmd)}\n`);
    return p;
  };
  return {
    async setSessions(sessions) {
      await ask({ op: "sessions", sessions });
    },
    async stats() {
      return JSON.parse(await ask({ op: "stats" })) as RelayStats;
    },
    async stop() {
      if (exitCode !== undefined) return;
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.stdin!.end();
      const t = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}
