// `up`, `join`, `config check` and the offline `deregister` run the agent's own code in
// this process (docs/architecture.md). The agent bundle sits beside this one and is
// imported at run time by path, so the CLI never links agent internals and commands
// like `plexd status` never pay for loading them.
export async function handOff(): Promise<void> {
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
  const [command, sub] = positional;
  return command !== undefined && (handedOff.has(command) || (command === "config" && sub === "check"));
}
