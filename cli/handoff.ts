// `up`, `join`, `config check` and the offline `deregister` run the agent's own code in
// this process (spec/node-agent.md §1.3). The agent bundle sits beside this one and is
// imported at run time by path, so the CLI never links agent internals and commands
// like `plexd status` never pay for loading them.
export async function handOff(): Promise<void> {
  const target = new URL("./plexd-agent.js", import.meta.url).href;
  await import(target);
}
