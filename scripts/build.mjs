// Bundles each executable with esbuild into dist/ (settings in bundle.mjs). Type checking is
// `npm run typecheck`; the installable artifact is `npm run release` (release.mjs).
// The CLI is bundled with its dependencies (start-up time) except
// ink/react, which only `plexd top` loads, lazily. `plexd` itself is a few lines that hand
// `up`/`join`/`deregister`/`config check` to the agent bundle and everything else to the CLI
// bundle, so the agent's process never holds the client commands (cli/entry.ts).
// The agent is bundled with its dependencies too: one tree-shaken script instead of ~300
// modules from node_modules is ~2 MB less resident memory for the whole life of `plexd up`
// (measured with `npm run bench -- rss-agent`). privhelper too (rss-privhelper: 81.4 → 77.7 MB
// after the applies, 61.4 → 58.8 idle); mockcp, the demo and the benchmarks keep their
// dependencies in node_modules.
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { bundle, copyReflectionProtos } from "./bundle.mjs";

const entries = [
  { in: "agent/main.ts", out: "plexd-agent", packages: "lazy-external", compact: true },
  { in: "privhelper/main.ts", out: "plexd-privhelper", packages: "lazy-external" },
  { in: "mockcp/main.ts", out: "plexd-mockcp", packages: "external" },
  { in: "cli/entry.ts", out: "plexd", packages: "lazy-external", compact: true },
  { in: "cli/main.ts", out: "plexd-cli", packages: "lazy-external", compact: true },
  { in: "test/demo/main.ts", out: "plexd-demo", packages: "external" },
  { in: "test/bench/main.ts", out: "plexd-bench", packages: "external" },
];

await mkdir("dist", { recursive: true });
await copyReflectionProtos("dist");
await Promise.all(entries.filter((e) => existsSync(e.in)).map((e) => bundle(e, "dist", e.packages)));
