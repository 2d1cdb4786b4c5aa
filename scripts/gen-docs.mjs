// Runs scripts/docs/main.ts (TypeScript that imports the agent's schema and handler table):
// esbuild bundles it, node runs the bundle. Called by `npm run docs` after `npm run gen`.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";

const out = "dist/plexd-docs.mjs";
await build({ entryPoints: ["scripts/docs/main.ts"], bundle: true, platform: "node", format: "esm", target: "node20", packages: "external", outfile: out, logLevel: "warning" });
execFileSync(process.execPath, [out], { stdio: "inherit" });
