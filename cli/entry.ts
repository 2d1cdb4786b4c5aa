import { handOff, isHandOff } from "./handoff.js";
import { versionLine } from "../proto/lib/version.js";

// The `plexd` executable. Commands that run the agent's code are handed over before anything
// else is loaded: `plexd up` is the agent for days, and what the client commands need would
// sit in its memory unused — even unrun, a bundled module's source text stays resident. So
// the client commands are a bundle of their own beside this one (cli/main.ts, built as
// plexd-cli.js), loaded by path like the agent's. `plexd --version`, which scripts and
// configuration management run to see what is installed, is answered here without loading
// either (the same line the full CLI prints; `npm run bench -- cold-start`).
const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--version") console.log(versionLine("plexd"));
else if (isHandOff(args)) await handOff(args);
else await import(new URL("./plexd-cli.js", import.meta.url).href);
