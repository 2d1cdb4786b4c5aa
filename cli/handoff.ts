// `up`, `join`, `config check` and the offline `deregister` run the agent's own code in
// this process (docs/architecture.md). The agent bundle sits beside this one and is
// imported at run time by path, so the CLI never links agent internals and commands
// like `plexd status` never pay for loading them.
import { setFlagsFromString } from "node:v8";

/**
 * V8 settings for the agent's long life (`plexd up`; the same as plexd-agent.js's first line,
 * scripts/node-flags.json): code that ran only at start-up gives its bytecode back after one
 * GC instead of five, and the heap is kept tight — idle with 1,000 peers ~81 → ~78.5 MB
 * (rss-agent; ~75 when given on the command line, where they also cost start-up time). Set here rather than in plexd.js's first line: any V8 flag there would cost every
 * short CLI command ~30 ms, because Node's built-in code cache is only used with default flags.
 * All three are read by V8 when it collects or tiers code, so setting them this early holds.
 */
export const agentV8Flags = ["--optimize-for-size", "--bytecode-old-age=1", "--flush-baseline-code"];

export async function handOff(args: readonly string[]): Promise<void> {
  if (positionals(args)[0] === "up") for (const flag of agentV8Flags) setFlagsFromString(flag);
  const target = new URL("./plexd-agent.js", import.meta.url).href;
  await import(target);
}

/** Global options of `plexd` that take a value as the next argument (cli/main.ts). */
const valueOptions = new Set(["--config", "--api", "--log-level", "--mode", "--socket", "-o", "--output"]);
// Not `deregister`: the CLI first asks a running agent to do it (cli/commands/agent-admin.ts) and
// hands over only when none answers, so it must load the client commands.
const handedOff = new Set(["up", "join"]);

/**
 * Whether `args` (process.argv after the script) name a command the agent's code runs. The
 * entry point asks before it loads the client commands, so a long-running `plexd up` never
 * holds commander's program, the node API client and its protocol code (~4 MB). Help and
 * version requests go to the full CLI, which prints them as before.
 */
export function isHandOff(args: readonly string[]): boolean {
  if (args.some((a) => a === "-h" || a === "--help" || a === "--version")) return false;
  const [command, sub] = positionals(args);
  return command !== undefined && (handedOff.has(command) || (command === "config" && sub === "check"));
}

/** The command and subcommand: the first two arguments that are neither options nor their values. */
function positionals(args: readonly string[]): string[] {
  const positional: string[] = [];
  for (let i = 0; i < args.length && positional.length < 2; i++) {
    const a = args[i]!;
    if (a === "--") break;
    if (a.startsWith("-")) {
      if (valueOptions.has(a)) i++;
      continue;
    }
    positional.push(a);
  }
  return positional;
}
