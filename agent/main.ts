import { Command, Option } from "commander";
import { PlexdError } from "../proto/lib/errors.js";
import { ConfigError, loadConfig } from "./config/load.js";
import { ConfigReloader, LiveConfig } from "./config/live.js";
import { checkConfigFile } from "./config/check.js";
import { deregisterOffline } from "./deregister.js";
import { join } from "./join.js";
import { runUp } from "./up.js";
import { StartupConfigError } from "./system.js";
import { realClock } from "./util/clock.js";
import { createLogger, type Logger } from "./util/log.js";
import type { Config } from "./config/schema.js";

// plexd-agent (also reached as `plexd up|join|config check|deregister`): parses flags,
// loads configuration once, and hands over to the part that does the work.

interface GlobalFlags {
  config?: string;
  api?: string;
  logLevel?: string;
  mode?: string;
}

function load(flags: GlobalFlags) {
  return loadConfig({
    ...(flags.config === undefined ? {} : { file: flags.config }),
    env: process.env,
    flags: {
      ...(flags.api === undefined ? {} : { api: flags.api }),
      ...(flags.mode === undefined ? {} : { mode: flags.mode }),
      ...(flags.logLevel === undefined ? {} : { logLevel: flags.logLevel }),
    },
  });
}

function configFailure(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`plexd: invalid configuration\n${err.format()}\n`);
    process.exit(2);
  }
  throw err;
}

/** One AbortSignal for every loop; SIGTERM/SIGINT abort it, a second signal forces exit. */
function stopSignal(): AbortSignal {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) process.exit(130);
    process.stderr.write(`plexd: ${sig} received, stopping\n`);
    ac.abort();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  return ac.signal;
}

/** A one-shot command (join, offline deregister): config, logger, exit code, done. */
async function oneShot(run: (config: Config, log: Logger, json: boolean) => Promise<number>): Promise<void> {
  let loaded;
  try {
    loaded = load(program.opts<GlobalFlags>());
  } catch (err) {
    configFailure(err);
  }
  const log = createLogger({ name: "plexd", level: loaded.config.log_level });
  try {
    process.exitCode = await run(loaded.config, log, program.opts<{ output: string }>().output === "json");
  } catch (err) {
    process.stderr.write(`plexd: ${PlexdError.from(err).message}\n`);
    process.exitCode = err instanceof StartupConfigError ? 2 : 1;
  }
  // Handles (grpc channels, keep-alive sockets) may linger; the work is done.
  setTimeout(() => process.exit(), 200).unref();
}

const program = new Command("plexd")
  .addOption(new Option("--config <file>", "configuration file").env("PLEXD_CONFIG"))
  .addOption(new Option("--api <url>", "control plane URL (overrides `api`)"))
  .addOption(new Option("--log-level <level>", "debug, info, warn or error"))
  .addOption(new Option("--mode <mode>", "node or bridge"))
  .addOption(new Option("--socket <path>", "node API socket (client commands)"))
  .addOption(new Option("-o, --output <format>", "text or json").default("text"))
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

program
  .command("up", { isDefault: true })
  .description("run the agent in the foreground")
  .action(async () => {
    const flags = program.opts<GlobalFlags>();
    let loaded;
    try {
      loaded = load(flags);
    } catch (err) {
      configFailure(err);
    }
    const log = createLogger({ name: "plexd", level: loaded.config.log_level });
    log.info({ config: loaded.file, api: loaded.config.api, mode: loaded.config.mode }, "starting");
    const live = new LiveConfig(loaded.config);
    const reloader = new ConfigReloader({ live, load: () => load(flags), log, sources: loaded.sources });
    // SIGHUP re-reads the configuration (docs/config-reference.md); without a handler Node would exit on it.
    process.on("SIGHUP", () => {
      try {
        reloader.reload("SIGHUP");
      } catch {
        // Logged by the reloader with every bad key path; the running configuration stays.
      }
    });
    try {
      process.exitCode = await runUp(live, log, realClock, process.env, stopSignal(), reloader);
    } catch (err) {
      const e = PlexdError.from(err);
      log.error({ code: e.code }, e.message);
      process.stderr.write(`plexd: ${e.message}\n`);
      process.exitCode = err instanceof StartupConfigError ? 2 : 1;
    }
    // Handles (grpc channels, keep-alive sockets) may linger; the work is done.
    setTimeout(() => process.exit(), 200).unref();
  });

program
  .command("join")
  .description("register and exit without starting the agent")
  .option("--token-file <path>", "read the bootstrap token from this file")
  .option("--token-stdin", "read the bootstrap token from standard input")
  .action((opts: { tokenFile?: string; tokenStdin?: boolean }) =>
    oneShot((config, log, json) => join(config, log, realClock, process.env, stopSignal(), opts, json)),
  );

program
  .command("deregister")
  .description("remove this node from the mesh")
  .option("--purge", "also remove identity, keys and cached state")
  .option("--force", "tear down locally even if the control plane cannot be told")
  .action((opts: { purge?: boolean; force?: boolean }) =>
    oneShot((config, log, json) => deregisterOffline(config, log, realClock, process.env, { purge: opts.purge === true, force: opts.force === true }, json)),
  );

program
  .command("config")
  .description("configuration tools")
  .command("check")
  .argument("[file]", "configuration file")
  .action((file: string | undefined) => {
    const target = file ?? program.opts<GlobalFlags>().config ?? process.env.PLEXD_CONFIG ?? "/etc/plexd/config.yaml";
    const json = program.opts<{ output: string }>().output === "json";
    const r = checkConfigFile(target, process.env, json);
    // JSON is the answer either way (stdout); text problems go to stderr.
    (r.exitCode === 0 || json ? process.stdout : process.stderr).write(r.output.endsWith("\n") ? r.output : r.output + "\n");
    process.exitCode = r.exitCode;
  });

await program.parseAsync(process.argv);
