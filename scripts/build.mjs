// Bundles each executable with esbuild. Type checking is `npm run typecheck`.
// The CLI is bundled with its dependencies (start-up time, docs/testing.md#performance-targets) except
// ink/react, which only `plexd top` loads, lazily. `plexd` itself is a few lines that hand
// `up`/`join`/`deregister`/`config check` to the agent bundle and everything else to the CLI
// bundle, so the agent's process never holds the client commands (cli/entry.ts).
// The agent is bundled with its dependencies too: one tree-shaken script instead of ~300
// modules from node_modules is ~2 MB less resident memory for the whole life of `plexd up`
// (docs/testing.md#performance-targets, 80 MB; measured with `npm run bench -- rss-agent`). privhelper too
// (rss-privhelper: 81.4 → 77.7 MB after the applies, 61.4 → 58.8 idle); mockcp, the demo and
// the benchmarks keep their dependencies in node_modules.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { chmod, cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

// The commit and build date every --version prints (proto/lib/version.ts); a tree outside git
// (a source tarball) says so instead of failing the build.
function commit() {
  try {
    return execFileSync("git", ["rev-parse", "--short=12", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
}

// V8 flags (node-flags.json) travel in a bundle's first line, so they hold however the
// executable is started (systemd, a shell, the tests, which run the bundles directly). For
// privhelper: its young generation otherwise grows to 32 MB during a large apply and stays;
// --optimize-for-size keeps the old generation from growing ahead of need under a flood (peak
// RSS 140 → 94 MiB in the flood test); a smaller process also forks its tools faster.
const nodeFlags = JSON.parse(await readFile(new URL("./node-flags.json", import.meta.url), "utf8"));
const bannerFor = (out) => ({
  js: [
    nodeFlags[out] ? `#!/usr/bin/env -S node ${nodeFlags[out].join(" ")}` : "#!/usr/bin/env node",
    'import { createRequire as __plexdCreateRequire } from "node:module";',
    "const require = __plexdCreateRequire(import.meta.url);",
    'const __plexdReflectionDir = decodeURIComponent(new URL("./grpc-reflection/src/implementations", import.meta.url).pathname);',
  ].join("\n"),
});

// @grpc/reflection reads its own .proto files relative to its code (__dirname), which a bundle
// does not have (an ES module has no __dirname at all): the build copies them beside the bundles
// (dist/grpc-reflection/proto) and points the bundled module at that directory.
const reflectionProtos = {
  name: "grpc-reflection-protos",
  setup(b) {
    b.onLoad({ filter: /@grpc[\\/]reflection[\\/]build[\\/]src[\\/]implementations[\\/]reflection-v1(alpha)?\.js$/ }, async (args) => ({
      contents: (await readFile(args.path, "utf8")).replaceAll("__dirname", "__plexdReflectionDir"),
      loader: "js",
      resolveDir: dirname(args.path),
    }));
  },
};

const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: "linked",
  logLevel: "warning",
  define: { "process.env.PLEXD_BUILD_DATE": JSON.stringify(new Date().toISOString()), "process.env.PLEXD_COMMIT": JSON.stringify(commit()) },
};

// `compact`: whitespace, comments and syntax minified (names kept, so stack traces still name
// functions; the .map files beside the bundles give lines back). V8 keeps a script's source text
// for the life of the process, so this is ~0.9 MB less resident agent memory, and less to parse
// at every CLI start. privhelper's bundle stays as written: it is the root code operators read.
const entries = [
  { in: "agent/main.ts", out: "plexd-agent", external: false, compact: true },
  { in: "privhelper/main.ts", out: "plexd-privhelper", external: false },
  { in: "mockcp/main.ts", out: "plexd-mockcp", external: true },
  { in: "cli/entry.ts", out: "plexd", external: false, compact: true },
  { in: "cli/main.ts", out: "plexd-cli", external: false, compact: true },
  { in: "test/demo/main.ts", out: "plexd-demo", external: true },
  { in: "test/bench/main.ts", out: "plexd-bench", external: true },
];

await mkdir("dist", { recursive: true });
await cp("node_modules/@grpc/reflection/build/proto", "dist/grpc-reflection/proto", { recursive: true });
const { existsSync } = await import("node:fs");
await Promise.all(
  entries
    .filter((e) => existsSync(e.in))
    .map(async (e) => {
      await build({
        ...common,
        entryPoints: [e.in],
        outfile: `dist/${e.out}.js`,
        banner: bannerFor(e.out),
        plugins: [reflectionProtos],
        ...(e.compact ? { minifyWhitespace: true, minifySyntax: true } : {}),
        ...(e.external ? { packages: "external" } : { external: ["ink", "react", "react/*", "ink-*", "pino-pretty"] }),
      });
      await latin1Only(`dist/${e.out}.js`);
      await chmod(`dist/${e.out}.js`, 0o755);
    }),
);

// V8 keeps a script's source text for the life of the process: one byte per character when
// every character is Latin-1, two bytes per character otherwise. esbuild escapes non-ASCII
// characters in code but copies the comments it keeps as written, so one em dash in a comment
// doubled the agent bundle's ~300 KB in the agent's memory. Outside comments esbuild has
// already escaped everything, so the rewrite only ever touches comment text.
async function latin1Only(file) {
  const text = await readFile(file, "utf8");
  const fixed = text.replace(/[^\t\n\r\u0020-\u00ff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  if (fixed !== text) await writeFile(file, fixed);
}
