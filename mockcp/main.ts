// plexd-mockcp: a real, in-memory control plane for development and tests (docs/mockcp.md).
// Flags only; everything else lives in createMockcp().
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { pino } from "pino";
import { parseWireDuration } from "../proto/lib/duration.js";
import { PlexdError } from "../proto/lib/errors.js";
import { redactOptions } from "../proto/lib/redact.js";
import { createMockcp } from "./mockcp.js";

const collect = (value: string, prev: string[] | undefined): string[] => [...(prev ?? []), value];
const duration = (value: string): number => {
  try {
    return Math.round(parseWireDuration(value));
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};
const positiveInt = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
};

const program = new Command()
  .name("plexd-mockcp")
  .description(
    "Mock plexd control plane: implements the control-plane contract (register, signed SSE events, heartbeat, state, key rotation, ...) in memory, plus a test-control API under /control/v1.\n\n" +
      "On start it prints one JSON line to stdout:\n" +
      '  {"event":"listening","urls":[...],"ca_file":"...","signing_public_key":"...","state_dir":"...","pid":N}\n' +
      "Logs go to stderr. SIGINT/SIGTERM stop it cleanly.",
  )
  .option("--listen <url>", "listen address, repeatable: http://HOST:PORT, https://HOST:PORT or unix:/abs/path.sock (default: http://127.0.0.1:8080)", collect)
  .option("--state-dir <dir>", "directory for ca.pem and TLS keys; kept across runs so the CA stays the same (default: a fresh temp dir, removed on exit)")
  .option("--tls-san <name>", "extra subject alternative name for the server certificate, repeatable", collect)
  .option("--signing-seed <hex>", "Ed25519 signing seed, 64 hex chars, for deterministic signatures (default: random)")
  .addOption(new Option("--keepalive <duration>", "SSE keepalive comment interval").argParser(duration).default(30_000, "30s"))
  .addOption(
    new Option("--heartbeat-interval <duration>", "heartbeat interval assumed for liveness: unreachable after 3 missed, offline after 10 (peers then get peer_removed, and peer_added when heartbeats resume)")
      .argParser(duration)
      .default(30_000, "30s"),
  )
  .addOption(new Option("--max-body-bytes <n>", "request body limit, compressed and decompressed").argParser(positiveInt).default(8 * 1024 * 1024, "8 MiB"))
  .option("--stun-listen <host:port>", "also answer STUN Binding requests on this IPv4 UDP address, repeatable (tests stand it in for public STUN servers)", collect)
  .option("--bootstrap-token <token>", "seed a single-use bootstrap token valid for 24h, repeatable (more via POST /control/v1/tokens)", collect)
  .addOption(new Option("--log-level <level>", "log level").choices(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"))
  .addHelpText(
    "after",
    "\nExamples:\n" +
      "  plexd-mockcp                                   # http://127.0.0.1:8080\n" +
      "  plexd-mockcp --listen https://0.0.0.0:8443 --tls-san cp.test --state-dir /tmp/cp\n" +
      "  plexd-mockcp --listen http://127.0.0.1:0 --listen unix:/tmp/mockcp.sock\n" +
      "  curl -s -XPOST localhost:8080/control/v1/tokens -d '{}'   # get a bootstrap token\n",
  )
  .showHelpAfterError()
  .exitOverride();

try {
  program.parse();
} catch (err) {
  // --help exits 0; any usage error exits 2, like a bad config file elsewhere in plexd.
  process.exit(err instanceof CommanderError && err.exitCode === 0 ? 0 : 2);
}
const opts = program.opts<{
  listen?: string[];
  stateDir?: string;
  tlsSan?: string[];
  signingSeed?: string;
  keepalive: number;
  heartbeatInterval: number;
  maxBodyBytes: number;
  bootstrapToken?: string[];
  stunListen?: string[];
  logLevel: string;
}>();

// mockcp handles tokens and node secret keys too: the same redaction as the agent.
const log = pino({ level: opts.logLevel, base: { name: "plexd-mockcp" }, redact: redactOptions() }, pino.destination({ fd: 2, sync: true }));

async function run(): Promise<void> {
  let mockcp;
  try {
    mockcp = createMockcp({
      listen: opts.listen ?? ["http://127.0.0.1:8080"],
      ...(opts.stateDir !== undefined ? { stateDir: opts.stateDir } : {}),
      tlsSans: opts.tlsSan ?? [],
      ca: "always",
      ...(opts.signingSeed !== undefined ? { signingSeed: opts.signingSeed } : {}),
      keepaliveMs: opts.keepalive,
      heartbeatIntervalMs: opts.heartbeatInterval,
      maxBodyBytes: opts.maxBodyBytes,
      stunListen: opts.stunListen ?? [],
      log,
    });
  } catch (err) {
    console.error(`plexd-mockcp: ${PlexdError.from(err).message}`);
    process.exit(2);
  }
  const controller = new AbortController();
  const stopped = new Promise<void>((resolve) => controller.signal.addEventListener("abort", () => resolve(), { once: true }));
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      log.info({ signal: sig }, "stopping");
      controller.abort();
    });
  }
  await mockcp.start(controller.signal);
  for (const t of opts.bootstrapToken ?? []) mockcp.state.createToken({ token: t, ttlSeconds: 86_400 });
  process.stdout.write(
    `${JSON.stringify({
      event: "listening",
      urls: mockcp.urls,
      stun: mockcp.stunAddresses,
      ca_file: mockcp.caFile,
      signing_public_key: mockcp.signingPublicKey(),
      state_dir: mockcp.stateDir,
      pid: process.pid,
    })}\n`,
  );
  await stopped;
  await mockcp.stop();
}

run().catch((err: unknown) => {
  log.fatal({ err }, "mockcp failed");
  console.error(`plexd-mockcp: ${PlexdError.from(err).message}`);
  process.exit(1);
});
