// plexd-privhelper: parse flags, load the root-owned config, serve the socket (design.md 4.1).
import { Command, Option } from "commander";
import { PrivHelperService } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import { grpcServiceDefinition } from "../proto/lib/grpc.js";
import { PlexdError } from "../proto/lib/errors.js";
import { bindHandlers } from "./adapter.js";
import { defaultConfigPath, loadPrivConfig } from "./config.js";
import { dirname } from "node:path";
import { buildHandlers, meshDeps } from "./handlers.js";
import { reportExisting } from "./mesh/adopt.js";
import { createLogger } from "./log.js";
import { realHost } from "./os/host.js";
import { execaRunner } from "./os/runner.js";
import { startServer } from "./server.js";

const program = new Command("plexd-privhelper")
  .description("plexd root helper: the only plexd process that changes kernel state")
  .option("--config <file>", "configuration file", process.env.PLEXD_CONFIG ?? defaultConfigPath)
  .option("--socket <path>", "socket path (overrides privhelper.socket)")
  .option("--group <name>", "group allowed to use the socket", "plexd")
  .option("--cleanup", "remove every plexd interface, table inet plexd and a leftover table ip plexd_stun, then exit")
  .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error"]).default("info"));
program.parse();
const flags = program.opts<{ config: string; socket?: string; group: string; cleanup?: boolean; logLevel: "debug" | "info" | "warn" | "error" }>();
const log = createLogger(flags.logLevel);

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) log.warn("not running as root: kernel changes will fail");
  const config = await loadPrivConfig(flags.config);
  const socketPath = flags.socket ?? config.socket;
  const deps = { runner: execaRunner, host: realHost, config, log, startedAtMs: Date.now(), logDir: dirname(socketPath) };
  const handlers = buildHandlers(deps);
  if (flags.cleanup) {
    const teardown = handlers.teardown;
    if (!teardown) throw new PlexdError("unimplemented", "cleanup is not implemented");
    const res = await teardown({ purge: true } as never, { signal: new AbortController().signal, caller: "cli" });
    log.info({ removed: res.removed, errors: res.errors }, "cleanup done");
    return res.errors && res.errors.length > 0 ? 1 : 0;
  }
  await reportExisting(meshDeps(deps), log);
  const server = await startServer({
    socketPath,
    group: flags.group,
    service: grpcServiceDefinition(PrivHelperService),
    implementation: bindHandlers(PrivHelperService, handlers, log),
    runner: execaRunner,
  });
  if (!server.widened) log.warn("could not raise the HTTP/2 receive window (grpc-js internals changed); large ApplyMesh requests will be slower");
  log.info({ socket: socketPath, group: flags.group, allowed: config.allowedInterfaces }, "privhelper listening");
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  // Kernel state is deliberately left in place: restarts must keep tunnels up (design.md 2).
  await server.close();
  log.info("privhelper stopped");
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const e = PlexdError.from(err);
    log.error({ code: e.code }, e.message);
    process.exit(e.code === "invalid_argument" ? 2 : 1);
  },
);
