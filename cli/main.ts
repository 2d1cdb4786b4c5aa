import { Command, Option } from "commander";
import { exitCodes } from "./exit-codes.js";
import { handOff } from "./handoff.js";

// `plexd`: one entry point. Client commands talk only to the node API; `up`, `join`,
// `config check` and the offline `deregister` are handed to the agent's own code
// (spec/node-agent.md §1.3), loaded at run time so this bundle stays small and fast.

const version = "0.1.0";

const program = new Command("plexd")
  .description("plexd: WireGuard mesh node agent")
  .version(`plexd ${version} (build ${process.env.PLEXD_BUILD_DATE ?? "dev"})`, "--version", "print version and build date")
  .addOption(new Option("--config <file>", "configuration file").env("PLEXD_CONFIG").default("/etc/plexd/config.yaml"))
  .addOption(new Option("--api <url>", "control plane URL (overrides `api`)"))
  .addOption(new Option("--log-level <level>", "debug, info, warn or error").choices(["debug", "info", "warn", "error"]))
  .addOption(new Option("--mode <mode>", "node or bridge").choices(["node", "bridge"]))
  .addOption(new Option("--socket <path>", "node API socket").env("PLEXD_NODE_API_SOCKET").default("/run/plexd/api.sock"))
  .addOption(new Option("-o, --output <format>", "text or json").choices(["text", "json"]).default("text"))
  .showHelpAfterError()
  .configureOutput({ outputError: (str, write) => write(str) })
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : exitCodes.usage));

program
  .command("up")
  .description("run the agent in the foreground")
  .allowUnknownOption()
  .action(() => handOff());

program
  .command("join")
  .description("register this node with the control plane and exit")
  .option("--token-file <path>", "read the bootstrap token from this file")
  .option("--token-stdin", "read the bootstrap token from standard input")
  .action(() => handOff());

program
  .command("deregister")
  .description("remove this node from the mesh (the only way a node deregisters)")
  .option("--purge", "also remove identity, keys and cached state")
  .option("--force", "tear down locally even if the control plane cannot be told")
  .action(() => handOff());

const config = program.command("config").description("configuration tools");
config
  .command("check")
  .argument("[file]", "configuration file (default: --config)")
  .description("validate a configuration file without starting anything")
  .action(() => handOff());

program
  .command("version")
  .description("print version and build date")
  .action(() => {
    const opts = program.opts<{ output: string }>();
    const info = { version, build_date: process.env.PLEXD_BUILD_DATE ?? "dev", node: process.version };
    console.log(opts.output === "json" ? JSON.stringify(info) : `plexd ${info.version} (build ${info.build_date}, node ${info.node})`);
  });

await program.parseAsync(process.argv);
