// plexd-privhelper: parse flags, load the root-owned config, serve the socket.
import { readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Command, Option } from "commander";
import { PrivHelperService } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../proto/lib/errors.js";
import { loadPeerCredAddon, nativePeerCredReader } from "../proto/lib/peercred.js";
import { grpcServiceDefinition } from "../proto/lib/grpc.js";
import { bindHandlers, createGate } from "./adapter.js";
import { defaultConfigPath, loadPrivConfig } from "./config.js";
import { buildHandlers } from "./handlers.js";
import { createLogger } from "./log.js";
import { realHost } from "./os/host.js";
import { processRunner } from "./os/run.js";
import { callerOf, startServer } from "./server.js";

const program = new Command("plexd-privhelper")
  .description("plexd root helper: the only plexd process that changes kernel state")
  .option("--config <file>", "configuration file", process.env.PLEXD_CONFIG ?? defaultConfigPath)
  .option("--socket <path>", "socket path (overrides privhelper.socket)")
  .option("--group <name>", "group allowed to connect to the socket", "plexd")
  .option("--agent-user <name>", "the only user besides root whose calls are served", "plexd")
  .option("--cleanup", "remove every plexd interface, route and nftables table, then exit")
  .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error"]).default("info"));
program.parse();
const flags = program.opts<{ config: string; socket?: string; group: string; agentUser: string; cleanup?: boolean; logLevel: "debug" | "info" | "warn" | "error" }>();
const log = createLogger(flags.logLevel);

/** Through NSS (getent), so LDAP/sssd accounts work like local ones. */
async function idOf(db: "passwd" | "group", name: string): Promise<number> {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/i.test(name)) throw new PlexdError("invalid_argument", `invalid ${db === "group" ? "group" : "user"} name ${JSON.stringify(name)}`);
  const r = await processRunner.run("getent", [db, name], { allowFailure: true, timeoutMs: 5_000 });
  const id = Number(r.stdout.split(":")[2]);
  if (r.exitCode !== 0 || !Number.isInteger(id)) throw new PlexdError("failed_precondition", `${db === "group" ? "group" : "user"} ${JSON.stringify(name)} does not exist`);
  return id;
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) log.warn("not running as root: kernel changes will fail");
  const config = await loadPrivConfig(flags.config);
  const socketPath = flags.socket ?? config.socket;
  const deps = { runner: processRunner, host: realHost, config, log, startedAtMs: Date.now(), runDir: dirname(socketPath) };
  const handlers = buildHandlers(deps);
  // FIFOs of a privhelper killed mid-apply (os/wg.ts): they never outlive the next start.
  for (const f of await readdir(deps.runDir).catch(() => [])) if (/^wg-[0-9a-f]+\.fifo$/.test(f)) await rm(join(deps.runDir, f), { force: true });
  if (flags.cleanup) {
    const res = await handlers.teardown({ purge: true } as never, { signal: new AbortController().signal, uid: 0, pid: process.pid });
    log.info({ removed: res.removed, errors: res.errors }, "cleanup done");
    return res.errors && res.errors.length > 0 ? 1 : 0;
  }
  if (!loadPeerCredAddon()) throw new PlexdError("failed_precondition", "the SO_PEERCRED addon is not built (npm run build:native): without it no caller can be told from another");
  const [gid, agentUid] = [await idOf("group", flags.group), await idOf("passwd", flags.agentUser)];
  const implementation = bindHandlers(PrivHelperService, handlers, { log, gates: { read: createGate(2, 64), write: createGate(2, 64), run: createGate(32, 32) }, callerOf });
  const server = await startServer({ socketPath, gid, allowedUids: [agentUid], service: grpcServiceDefinition(PrivHelperService, { rawRequests: true }), implementation, readPeer: nativePeerCredReader(), log });
  log.info({ socket: socketPath, group: flags.group, agentUser: flags.agentUser, allowed: config.allowedInterfaces }, "privhelper listening");
  await new Promise((resolve) => process.once("SIGTERM", resolve).once("SIGINT", resolve));
  // Kernel state is left in place: restarts must keep tunnels up.
  await server.close();
  log.info("privhelper stopped");
  return 0;
}

// A backstop, not the way errors are handled: every call ends as its own gRPC status.
let unhandled = 0;
process.on("unhandledRejection", (err) => log.error({ unhandled: ++unhandled, error: PlexdError.from(err).message }, "unhandled rejection (a bug; privhelper keeps serving)"));

main().then((code) => process.exit(code), (err: unknown) => {
  const e = PlexdError.from(err);
  log.error({ code: e.code }, e.message);
  process.exit(e.code === "invalid_argument" ? 2 : 1);
});
