import { handOff, isHandOff } from "./handoff.js";

// The `plexd` executable. Commands that run the agent's code are handed over before anything
// else is loaded: `plexd up` is the agent for days, and what the client commands need would
// sit in its memory unused — even unrun, a bundled module's source text stays resident. So
// the client commands are a bundle of their own beside this one (cli/main.ts, built as
// plexd-cli.js), loaded by path like the agent's.
if (isHandOff(process.argv.slice(2))) await handOff();
else await import(new URL("./plexd-cli.js", import.meta.url).href);
