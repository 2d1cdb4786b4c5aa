import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { PlexdError } from "../proto/lib/errors.js";
import { MockcpClient } from "./control/client.js";

export { createMockcp, type Mockcp, type MockcpOptions } from "./mockcp.js";

export interface LaunchOptions {
  /** Run inside this network namespace (`ip netns exec NS node ...`). */
  netns?: string;
  /** CP listen URLs; default `http://127.0.0.1:0`. */
  listen?: string[];
  /**
   * Also listen on a unix socket (in a temp dir) and point `client` at it, so tests in the
   * root namespace reach the control API of a mockcp inside another namespace. Default true.
   */
  controlSocket?: boolean;
  stateDir?: string;
  tlsSans?: string[];
  signingSeed?: string;
  /** Duration string, e.g. `30s`. */
  keepalive?: string;
  heartbeatInterval?: string;
  /** STUN Binding responders, `IPV4:PORT` each (`--stun-listen`). */
  stunListen?: string[];
  logLevel?: string;
  extraArgs?: string[];
  /** Path of plexd-mockcp.js; default the built `dist/plexd-mockcp.js`. */
  bin?: string;
  startTimeoutMs?: number;
  /** Where mockcp's stderr (logs) goes; default inherit. */
  stderr?: "inherit" | "pipe" | "ignore";
}

export interface LaunchedMockcp {
  pid: number;
  /** Settles when the process has exited (never rejects). */
  exited: Promise<{ exitCode: number | undefined; signal: string | undefined }>;
  urls: string[];
  /** The first http(s) URL: what an agent's `control_plane.url` should be. */
  url: string;
  caFile: string;
  signingPublicKey: string;
  stateDir: string;
  client: MockcpClient;
  /** SIGTERM, then SIGKILL after 5 s; removes the control-socket temp dir. Idempotent. */
  stop(): Promise<void>;
}

interface ListeningLine {
  event: "listening";
  urls: string[];
  ca_file: string;
  signing_public_key: string;
  state_dir: string;
}

function defaultBin(): string {
  // From source (mockcp/launch.ts) the bundle is ../dist; when bundled into dist/ it sits beside us.
  const candidates = [new URL("../dist/plexd-mockcp.js", import.meta.url), new URL("./plexd-mockcp.js", import.meta.url)].map((u) => fileURLToPath(u));
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) throw new PlexdError("not_found", `plexd-mockcp.js not found (tried ${candidates.join(", ")}); run npm run build`);
  return found;
}

/** Spawns the built mockcp as a separate process and waits for its listening line. */
export async function startMockcp(opts: LaunchOptions = {}): Promise<LaunchedMockcp> {
  const bin = opts.bin ?? defaultBin();
  const sockDir = opts.controlSocket === false ? undefined : await mkdtemp(join(tmpdir(), "plexd-mockcp-sock-"));
  const listen = [...(opts.listen ?? ["http://127.0.0.1:0"]), ...(sockDir === undefined ? [] : [`unix:${join(sockDir, "control.sock")}`])];
  const args = [bin, ...listen.flatMap((l) => ["--listen", l])];
  if (opts.stateDir !== undefined) args.push("--state-dir", opts.stateDir);
  for (const san of opts.tlsSans ?? []) args.push("--tls-san", san);
  if (opts.signingSeed !== undefined) args.push("--signing-seed", opts.signingSeed);
  if (opts.keepalive !== undefined) args.push("--keepalive", opts.keepalive);
  if (opts.heartbeatInterval !== undefined) args.push("--heartbeat-interval", opts.heartbeatInterval);
  for (const s of opts.stunListen ?? []) args.push("--stun-listen", s);
  args.push("--log-level", opts.logLevel ?? "warn", ...(opts.extraArgs ?? []));
  const [file, argv] = opts.netns === undefined ? [process.execPath, args] : ["ip", ["netns", "exec", opts.netns, process.execPath, ...args]];

  const child = execa(file, argv, { stdout: "pipe", stderr: opts.stderr ?? "inherit", stdin: "ignore", reject: false });
  const pid = child.pid;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await child;
        clearTimeout(killer);
      }
      if (sockDir !== undefined) await rm(sockDir, { recursive: true, force: true });
    })();
    return stopping;
  };
  if (pid === undefined) {
    await stop();
    throw new PlexdError("unavailable", "could not spawn plexd-mockcp");
  }

  try {
    const line = await new Promise<ListeningLine>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout });
      const timer = setTimeout(() => reject(new PlexdError("deadline_exceeded", "plexd-mockcp did not report listening in time")), opts.startTimeoutMs ?? 15_000);
      rl.on("line", (l) => {
        try {
          const parsed = JSON.parse(l) as Partial<ListeningLine>;
          if (parsed.event === "listening") {
            clearTimeout(timer);
            resolve(parsed as ListeningLine);
          }
        } catch {
          // not our line
        }
      });
      // reject: false: execa resolves with the result even when the spawn fails.
      void child.then((r) => {
        clearTimeout(timer);
        reject(new PlexdError("unavailable", `plexd-mockcp exited before listening (code ${String(r.exitCode)}, signal ${String(r.signal)})`));
      });
    });
    const tcp = line.urls.filter((u) => !u.startsWith("unix:"));
    const unix = line.urls.find((u) => u.startsWith("unix:"));
    const url = tcp[0] ?? "";
    const client =
      unix !== undefined
        ? new MockcpClient({ socketPath: unix.slice("unix:".length) })
        : new MockcpClient({ baseUrl: url, ...(line.ca_file !== null ? { ca: await readFile(line.ca_file) } : {}) });
    const exited = child.then((r) => ({ exitCode: r.exitCode, signal: r.signal }));
    return { pid, exited, urls: line.urls, url, caFile: line.ca_file, signingPublicKey: line.signing_public_key, stateDir: line.state_dir, client, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
