import { mkdir, mkdtemp, readFile, rm, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { PlexdError } from "../proto/lib/errors.js";
import { createApp } from "./server/app.js";
import { bindListener, closeListener, parseListen, type BoundListener, type ListenSpec } from "./server/listeners.js";
import { parseStunListen, startStunResponder, type StunResponder } from "./server/stun.js";
import { StreamHub } from "./server/streams.js";
import { generateCa, generateServerCert, type Pem } from "./server/tls.js";
import { sweepLiveness } from "./state/liveness.js";
import { SigningKey } from "./state/signer.js";
import { MockState, type Clock } from "./state/store.js";

export interface MockcpOptions {
  /** Listen URLs (`http://H:P`, `https://H:P`, `unix:/abs.sock`); default `http://127.0.0.1:0`. */
  listen?: string[];
  /** Where ca.pem and the TLS keys go; default a fresh temp dir that stop() removes. */
  stateDir?: string;
  /** Extra subject alternative names for the server certificate. */
  tlsSans?: string[];
  /** `always` writes ca.pem even without an https listener (the CLI does); `auto` only when needed. */
  ca?: "always" | "auto";
  /** 32-byte Ed25519 seed as 64 hex chars, for deterministic signatures. */
  signingSeed?: string;
  /** SSE keepalive comment interval (30 s). */
  keepaliveMs?: number;
  /** Request body cap, on the wire and after gunzip; default 8 MiB. */
  maxBodyBytes?: number;
  heartbeatIntervalMs?: number;
  rotateNskOnKeyRotate?: boolean;
  eventLog?: { minEvents?: number; minAgeMs?: number };
  now?: Clock;
  log?: Logger;
  /** STUN Binding responders to start, `IPV4:PORT` each (server/stun.ts). */
  stunListen?: string[];
}

export interface Mockcp {
  readonly state: MockState;
  readonly hub: StreamHub;
  /** Filled by start(). */
  readonly urls: string[];
  /** Bound STUN responder addresses (`IPV4:PORT`), filled by start(). */
  readonly stunAddresses: string[];
  readonly stateDir: string;
  /** Path of ca.pem, or null when no CA was generated (`ca: "auto"` without https listeners). */
  readonly caFile: string | null;
  signingPublicKey(): string;
  /** Binds every listener; aborting `signal` stops the server. */
  start(signal?: AbortSignal): Promise<void>;
  stop(): Promise<void>;
}

/** Builds an in-process mockcp. Nothing listens until start(). */
export function createMockcp(opts: MockcpOptions = {}): Mockcp {
  const specs: ListenSpec[] = (opts.listen ?? ["http://127.0.0.1:0"]).map(parseListen);
  const log = opts.log ?? pino({ level: "silent" });
  const state = new MockState({
    ...(opts.now !== undefined ? { now: opts.now } : {}),
    signingKey: opts.signingSeed === undefined ? SigningKey.generate() : SigningKey.fromHex(opts.signingSeed),
    ...(opts.heartbeatIntervalMs !== undefined ? { heartbeatIntervalMs: opts.heartbeatIntervalMs } : {}),
    ...(opts.rotateNskOnKeyRotate !== undefined ? { rotateNskOnKeyRotate: opts.rotateNskOnKeyRotate } : {}),
    ...(opts.eventLog !== undefined ? { eventLog: opts.eventLog } : {}),
  });
  const hub = new StreamHub(state, { keepaliveMs: opts.keepaliveMs ?? 30_000, log });
  const app = createApp({ state, hub, log, maxBodyBytes: opts.maxBodyBytes ?? 8 * 1024 * 1024 });
  let listeners: BoundListener[] = [];
  const stunSpecs = (opts.stunListen ?? []).map(parseStunListen);
  let stun: StunResponder[] = [];
  let stateDir = opts.stateDir ?? "";
  let ownsStateDir = false;
  let caFile: string | null = null;
  let started = false;
  let stopping: Promise<void> | undefined;
  let livenessTimer: NodeJS.Timeout | undefined;

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(livenessTimer);
      hub.drop(undefined, "end");
      await Promise.all(listeners.map(closeListener));
      listeners = [];
      await Promise.all(stun.map((s) => s.close()));
      stun = [];
      if (ownsStateDir) await rm(stateDir, { recursive: true, force: true });
      log.info("mockcp stopped");
    })();
    return stopping;
  };

  const mockcp: Mockcp = {
    state,
    hub,
    get urls() {
      return listeners.map((l) => l.url);
    },
    get stunAddresses() {
      return stun.map((s) => s.address);
    },
    get stateDir() {
      return stateDir;
    },
    get caFile() {
      return caFile;
    },
    signingPublicKey: () => state.keys.signer(state.now()).publicKey,
    stop,
    async start(signal) {
      if (started) throw new PlexdError("failed_precondition", "mockcp already started");
      started = true;
      signal?.throwIfAborted();
      if (stateDir === "") {
        stateDir = await mkdtemp(join(tmpdir(), "plexd-mockcp-"));
        ownsStateDir = true;
      } else {
        await mkdir(stateDir, { recursive: true, mode: 0o700 });
      }
      const needTls = specs.some((s) => s.kind === "https");
      let serverPem: Pem | undefined;
      if (needTls || opts.ca === "always") {
        const ca = await loadOrCreateCa(stateDir);
        state.ingress.useCa(ca);
        caFile = join(stateDir, "ca.pem");
        const sans = ["localhost", "127.0.0.1", "::1", ...specs.flatMap((s) => (s.kind === "unix" ? [] : [s.host])), ...(opts.tlsSans ?? [])];
        serverPem = generateServerCert(ca, sans.filter((s) => s !== "" && s !== "0.0.0.0" && s !== "::"));
        await writeFile(join(stateDir, "server.pem"), serverPem.cert, { mode: 0o644 });
        await writeFile(join(stateDir, "server-key.pem"), serverPem.key, { mode: 0o600 });
      }
      try {
        for (const spec of specs) listeners.push(await bindListener(spec, app, serverPem));
        for (const spec of stunSpecs) stun.push(await startStunResponder(spec, (err) => log.error({ err }, "STUN responder error")));
      } catch (err) {
        await stop();
        throw PlexdError.from(err);
      }
      for (const l of listeners) l.server.on("error", (err) => log.error({ err, url: l.url }, "listener error"));
      // Heartbeat liveness also advances without requests; every request sweeps too (server/app.ts).
      const tick = Math.min(Math.max(state.heartbeatIntervalMs / 4, 10), 5000);
      livenessTimer = setInterval(() => {
        const gone = sweepLiveness(state);
        if (gone.length > 0) log.info({ nodes: gone }, "nodes went offline");
      }, tick);
      livenessTimer.unref();
      log.info({ urls: mockcp.urls, stateDir, caFile }, "mockcp listening");
      signal?.addEventListener("abort", () => void stop(), { once: true });
    },
  };
  return mockcp;
}

/**
 * Reuses ca.pem/ca-key.pem from a kept state dir, so an agent configured with
 * `control_plane.ca_file` keeps trusting mockcp across restarts.
 */
async function loadOrCreateCa(dir: string): Promise<Pem> {
  const certPath = join(dir, "ca.pem");
  const keyPath = join(dir, "ca-key.pem");
  try {
    return { cert: await readFile(certPath, "utf8"), key: await readFile(keyPath, "utf8") };
  } catch {
    const ca = generateCa();
    await writeFile(keyPath, ca.key, { mode: 0o600 });
    await writeFile(certPath, ca.cert, { mode: 0o644 });
    await chmod(certPath, 0o644);
    return ca;
  }
}
