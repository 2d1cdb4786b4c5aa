import { Command, Option } from "commander";
import { createNodeClient, describeError, exitCodeOf, type NodeClient } from "./client.js";
import { parseDuration } from "../proto/lib/duration.js";
import { buildInfo, versionLine } from "../proto/lib/version.js";
import { PlexdError } from "../proto/lib/errors.js";
import { exitCodes } from "./exit-codes.js";
import { handOff } from "./handoff.js";
import { UsageError } from "./usage-error.js";
import { actions, hooks } from "./commands/actions.js";
import { hooksSign } from "./commands/hooks-sign.js";
import { actionsRun } from "./commands/actions-run.js";
import { peers, policies } from "./commands/peers.js";
import { metrics } from "./commands/metrics.js";
import { stateGet, stateReport, stateSummary, stateTypes, type ReportOptions } from "./commands/state.js";
import { status } from "./commands/status.js";
import { deregister, logLevel, reload } from "./commands/agent-admin.js";
import { completionScript, shells, type Shell } from "./completion.js";
import { defaultActionsSocket, defaultSocket, socketFromConfig } from "./config-socket.js";
import { watch } from "./commands/watch.js";
import { audit } from "./commands/audit.js";
import { addInstallCommands } from "./install/command.js";
import { logStatus } from "./commands/log-status.js";
import { logs } from "./commands/logs.js";
import { userConfig, users } from "./commands/user-access.js";

// `plexd`: one entry point. Client commands talk only to the node API; `up`, `join`,
// `config check` and the offline `deregister` are handed to the agent's own code
// (docs/architecture.md), loaded at run time so this bundle stays small and fast.
// `top` loads Ink and React only when it runs (cli/top is reached through import()).

interface GlobalOptions {
  config: string;
  socket?: string;
  output: "text" | "json";
}

const program = new Command("plexd")
  .description("plexd: WireGuard mesh node agent and its command-line client")
  .version(versionLine("plexd"), "--version", "print version, commit and build date")
  .addOption(new Option("--config <file>", "configuration file").env("PLEXD_CONFIG").default("/etc/plexd/config.yaml"))
  .addOption(new Option("--api <url>", "control plane URL (overrides `api`)"))
  .addOption(new Option("--log-level <level>", "debug, info, warn or error").choices(["debug", "info", "warn", "error"]))
  .addOption(new Option("--mode <mode>", "node or bridge").choices(["node", "bridge"]))
  .addOption(new Option("--socket <path>", `node API socket for client commands (default: node_api.socket of --config, else ${defaultSocket})`).env("PLEXD_NODE_API_SOCKET"))
  .addOption(new Option("-o, --output <format>", "text or json (json prints the response message)").choices(["text", "json"]).default("text"))
  .configureHelp({ showGlobalOptions: true })
  .showHelpAfterError()
  .configureOutput({ outputError: (str, write) => write(str) })
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : exitCodes.usage))
  .addHelpText(
    "after",
    `
Exit codes: 0 ok, 1 error, 2 usage, 3 agent not reachable, 4 not found,
5 permission denied, 6 version conflict, 7 control plane unavailable.`,
  );

function globals(): GlobalOptions {
  return program.opts<GlobalOptions>();
}

/** `--socket` or PLEXD_NODE_API_SOCKET when given, else the configuration file's node_api.socket. */
async function socketPath(): Promise<string> {
  const g = globals();
  // An empty PLEXD_NODE_API_SOCKET counts as unset.
  if (g.socket !== undefined && g.socket !== "") return g.socket;
  return (await socketFromConfig(g.config)) ?? defaultSocket;
}

/** Runs a client command: builds the client, maps failures to the exit codes (cli/exit-codes.ts). */
function client(fn: (c: NodeClient, json: boolean) => Promise<void>): () => Promise<void> {
  return async () => {
    const g = { ...globals(), socket: await socketPath() };
    try {
      await fn(createNodeClient(g.socket), g.output === "json");
    } catch (err) {
      if (err instanceof UsageError) {
        process.stderr.write(`plexd: ${err.message}\n`);
        process.exit(exitCodes.usage);
      }
      process.stderr.write(`${describeError(err, g.socket)}\n`);
      process.exit(exitCodeOf(err));
    }
  };
}

// ---------------------------------------------------------------- agent hand-offs

program
  .command("up")
  .description("run the agent in the foreground")
  .allowUnknownOption()
  .action(() => handOff(process.argv.slice(2)));

program
  .command("join")
  .description("register this node with the control plane and exit")
  .option("--token-file <path>", "read the bootstrap token from this file")
  .option("--token-stdin", "read the bootstrap token from standard input")
  .action(() => handOff(process.argv.slice(2)));

program
  .command("deregister")
  .description("remove this node from the mesh (the only way a node deregisters): through the running agent, or directly when none answers")
  .option("--purge", "also remove identity, keys and cached state")
  .option("--force", "tear down locally even if the control plane cannot be told")
  .action((opts: { purge?: boolean; force?: boolean }) =>
    client(async (c, json) => {
      // No agent answering: the offline path of the agent's own code (docs/architecture.md).
      if ((await deregister(c, json, { purge: opts.purge === true, force: opts.force === true })) === "no_agent") await handOff(process.argv.slice(2));
    })(),
  );

const config = program.command("config").description("configuration tools");
config
  .command("check")
  .argument("[file]", "configuration file (default: --config)")
  .description("validate a configuration file without starting anything")
  .action(() => handOff(process.argv.slice(2)));

// ---------------------------------------------------------------- node API clients

program
  .command("status")
  .description("phase, identity, control-plane connection, heartbeat, reconcile, NAT, peers and health (-o json: one document with self and peers)")
  .option("--check", "exit 1 when the node is degraded or unhealthy (for scripts and supervisors)")
  .action((opts: { check?: boolean }) =>
    client(async (c, json) => {
      const healthy = await status(c, json);
      if (opts.check === true && !healthy) process.exitCode = exitCodes.error;
    })(),
  );

program
  .command("reload")
  .description("re-read the configuration file in the running agent; prints what applied and what needs a restart")
  .action(client((c, json) => reload(c, json)));

program
  .command("log-level")
  .description("change the agent's log level now (until the next reload or restart)")
  .argument("<level>", "debug, info, warn or error")
  .action((level: string) => client((c, json) => logLevel(c, json, level))());

program
  .command("log-status")
  .description("log forwarding: sources, buffer, drops, last flush")
  .action(client((c, json) => logStatus(c, json)));

program
  .command("logs")
  .description("the log lines this agent forwarded lately (journald and files); --follow for new ones")
  .option("-n, --lines <n>", "how many of the latest lines (1-1000)", "50")
  .option("-f, --follow", "keep printing new lines until interrupted")
  .action((opts: { lines: string; follow?: boolean }) => client((c, json) => logs(c, json, { lines: opts.lines, follow: opts.follow === true }))());

program
  .command("peers")
  .description("mesh peers with endpoint, last handshake, traffic and latency")
  .option("--all", "include peers the policy makes invisible to this node")
  .action((opts: { all?: boolean }) => client((c, json) => peers(c, json, opts.all === true))());

program
  .command("audit")
  .description("audit forwarding: sources (kernel records, Kubernetes audit log), buffer, drops, last flush, and the last events")
  .option("-n, --events <count>", "show the last this-many events (0-200)", "20")
  .action((opts: { events: string }) =>
    client(async (c, json) => {
      const n = Number(opts.events);
      if (!Number.isInteger(n) || n < 0 || n > 200) throw new UsageError(`--events: expected a whole number 0-200, got ${JSON.stringify(opts.events)}`);
      await audit(c, json, n);
    })(),
  );

program
  .command("metrics")
  .description("the agent's metrics and telemetry delivery counters in Prometheus text format (as GET /metrics on the node API)")
  .action(client((c, json) => metrics(c, json)));

program
  .command("policies")
  .description("policies applied to this node")
  .option("--rules", "also show the rendered firewall rules with hit counters")
  .action((opts: { rules?: boolean }) => client((c, json) => policies(c, json, opts.rules === true))());

const actionsCmd = program
  .command("actions")
  .description("built-in actions and declared hooks this node can run, and the latest executions")
  .action(client((c, json) => actions(c, json)));
actionsCmd
  .command("run")
  .description("run an action on this node through the actions socket, with the same checks as a control-plane request; authorized by the session token in PLEXD_SESSION_TOKEN, or by --local")
  .argument("<name>", "a built-in (system.info) or hooks/<name>")
  .option("--param <name=value>", "a parameter (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
  .option("--timeout <duration>", "timeout, e.g. 30s (default: the hook's, else actions.default_timeout)")
  .option("--local", "emergency run without a session token: uid 0 or the plexd user only")
  .action(async (name: string, opts: { param: string[]; timeout?: string; local?: boolean }) => {
    const g = globals();
    const socket = (await socketFromConfig(g.config, "actions")) ?? defaultActionsSocket;
    try {
      await actionsRun(socket, name, { params: opts.param, ...(opts.timeout === undefined ? {} : { timeout: opts.timeout }), local: opts.local === true }, g.output === "json");
    } catch (err) {
      if (err instanceof UsageError) {
        process.stderr.write(`plexd: ${err.message}\n`);
        process.exit(exitCodes.usage);
      }
      process.stderr.write(`${describeError(err, socket)}\n`);
      process.exit(exitCodeOf(err));
    }
  });

const hooksCmd = program.command("hooks").description("declared hooks: list, verify the files, rescan");
hooksCmd
  .command("list")
  .description("declared hooks with the checksum announced to the control plane and any problem")
  .action(client((c, json) => hooks(c, json, "list")));
hooksCmd
  .command("verify")
  .description("check and hash every hook file now; exit 8 when one differs from what was announced")
  .action(client((c, json) => hooks(c, json, "verify")));
hooksCmd
  .command("reload")
  .description("rescan the hooks and announce the result to the control plane")
  .action(client((c, json) => hooks(c, json, "reload")));
hooksCmd
  .command("sign")
  .description("write HOOK.sig, an Ed25519 signature over the SHA-256 of HOOK (no agent needed); prints the public key for hooks.trusted_keys")
  .requiredOption("--key <file>", "Ed25519 private key, PEM (openssl genpkey -algorithm ed25519); mode 0600")
  .argument("<hook>", "the hook file")
  .action(async (hook: string, opts: { key: string }) => {
    try {
      await hooksSign(opts.key, hook, globals().output === "json");
    } catch (err) {
      const usage = err instanceof UsageError || (err instanceof PlexdError && err.code === "invalid_argument");
      process.stderr.write(`plexd: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(usage ? exitCodes.usage : exitCodes.error);
    }
  });

const state = program
  .command("state")
  .description("node state: metadata, data, secrets index and reports (summary without a subcommand)")
  .action(client((c, json) => stateSummary(c, json)));

state
  .command("get")
  .description(`print one entry; TYPE is ${stateTypes.join(", ")} (secret needs the secrets access class)`)
  .argument("<type>", stateTypes.join(" | "))
  .argument("<key>", "entry key")
  .action((type: string, key: string) => client((c, json) => stateGet(c, json, type, key))());

state
  .command("report")
  .description("write or delete a report entry (synced to the control plane)")
  .argument("<key>", "report key")
  .option("--data <json>", "payload as JSON")
  .option("--data-file <path>", "read the JSON payload from a file (- for stdin)")
  .option("--content-type <type>", "MIME type of the entry", "application/json")
  .option("--if-match <version>", "only if the entry is at this version (0: only if absent)")
  .option("--delete", "delete the entry instead")
  .action((key: string, opts: ReportOptions) => client((c, json) => stateReport(c, json, key, opts))());

program
  .command("watch")
  .description("stream agent events: peer up/down, handshakes, policy, health, drift corrected")
  .option("--kind <kind...>", "only these kinds (peer_up, peer_down, handshake, policy_changed, health_changed, drift_corrected, event)")
  .action((opts: { kind?: string[] }) =>
    client(async (c, json) => {
      const ac = new AbortController();
      process.once("SIGINT", () => ac.abort());
      process.once("SIGTERM", () => ac.abort());
      await watch(c, json, opts.kind ?? [], ac.signal);
    })(),
  );

program
  .command("top")
  .description("full-screen live view of the node (read-only)")
  .option("--interval <duration>", "peer polling interval (min 500ms)", "2s")
  .action(async (opts: { interval: string }) => {
    const g = { ...globals(), socket: await socketPath() };
    const interval = parseDuration(opts.interval);
    if (interval === undefined || interval < 500) {
      process.stderr.write(`plexd: --interval must be a duration of at least 500ms (e.g. 2s), got ${JSON.stringify(opts.interval)}\n`);
      process.exit(exitCodes.usage);
    }
    if (process.stdout.isTTY !== true || process.stdin.isTTY !== true) {
      process.stderr.write("plexd top needs a terminal; for scripts use `plexd status -o json`\n");
      process.exit(exitCodes.usage);
    }
    // Loaded only here: Ink and React cost ~0.7 s, which no other command should pay.
    const { runTop } = await import("./top/run.js");
    process.exit(await runTop({ socketPath: g.socket, intervalMs: interval }));
  });

addInstallCommands(program);

program
  .command("self-test")
  .description("check whether this host is ready to run plexd (exit 0 ready, 1 degraded, 2 not ready)")
  .option("--json", "print the checks as JSON (same as -o json)")
  .addHelpText("after", "\nChecks and what each verdict means: docs/self-test.md")
  .action(async (opts: { json?: boolean }) => {
    const g = program.opts<GlobalOptions & { api?: string }>();
    const { runSelfTest, toJson, toTable, verdictExitCodes, verdictOf } = await import("./selftest/index.js");
    const results = await runSelfTest(g.config, g.api);
    process.stdout.write(opts.json === true || g.output === "json" ? `${toJson(results)}\n` : toTable(results));
    process.exitCode = verdictExitCodes[verdictOf(results)];
  });

const bridgeCmd = program.command("bridge").description("bridge mode: user access (docs/bridge.md)");
bridgeCmd
  .command("user-config")
  .description("print a user's WireGuard (wg-quick) configuration for the bridge's user access; needs uid 0 or group plexd-secrets (it carries the user's preshared key)")
  .argument("<user>", "the client's label or public key")
  .option("--private-key-file <file>", "the user's private key (wg genkey), mode 0600; without it the config holds a placeholder")
  .option("--endpoint <host:port>", "the address users dial (default: the bridge's public address from NAT discovery and the access port)")
  .option("--qr", "print the configuration as a QR code for the WireGuard mobile apps")
  .action((user: string, opts: { privateKeyFile?: string; endpoint?: string; qr?: boolean }) =>
    client((c, json) => userConfig(c, json, user, { ...(opts.privateKeyFile !== undefined ? { privateKeyFile: opts.privateKeyFile } : {}), ...(opts.endpoint !== undefined ? { endpoint: opts.endpoint } : {}), qr: opts.qr === true }))(),
  );
bridgeCmd
  .command("users")
  .description("the bridge's user-access clients with their last handshake and traffic, and the refused ones")
  .action(client((c, json) => users(c, json)));

program
  .command("version")
  .description("print version, commit and build date")
  .action(() => {
    const opts = globals();
    const info = { version: buildInfo.version, commit: buildInfo.commit, build_date: buildInfo.buildDate, node: process.version };
    console.log(opts.output === "json" ? JSON.stringify(info) : `${versionLine("plexd")}, node ${info.node}`);
  });

program
  .command("completion")
  .description(`print a shell completion script (${shells.join(", ")})`)
  .argument("<shell>", shells.join(" | "))
  .addHelpText("after", "\nbash: source <(plexd completion bash)\nzsh:  plexd completion zsh > \"${fpath[1]}/_plexd\"\nfish: plexd completion fish > ~/.config/fish/completions/plexd.fish")
  .action((shell: string) => {
    if (!(shells as readonly string[]).includes(shell)) {
      process.stderr.write(`plexd: unknown shell ${JSON.stringify(shell)}: use one of ${shells.join(", ")}\n`);
      process.exit(exitCodes.usage);
    }
    process.stdout.write(completionScript(program, shell as Shell));
  });

await program.parseAsync(process.argv);
