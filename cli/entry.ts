import { handOff, isHandOff } from "./handoff.js";

// The `plexd` executable. Commands that run the agent's code are handed over before anything
// else is loaded: `plexd up` is the agent for days, and what the client commands need
// (cli/main.ts) would sit in its memory unused. Everything else is the CLI.
if (isHandOff(process.argv.slice(2))) await handOff();
else await import("./main.js");
