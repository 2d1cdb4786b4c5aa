// The esbuild settings every plexd bundle shares, for the development build (scripts/build.mjs,
// into dist/) and the release artifact (scripts/release.mjs). See build.mjs for why each
// executable is bundled the way it is.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { chmod, cp, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

// The commit and build date every --version prints (proto/lib/version.ts); a tree outside git
// (a source tarball) says so instead of failing the build.
export function commit() {
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
// plexd-agent: the agent's memory flags; `plexd up` sets the same ones when it hands over
// (cli/handoff.ts), as plexd.js itself carries none (each would slow every CLI command).
// One build, one stamp: every bundle of a build prints the same line.
const builtAt = new Date().toISOString();
export const packageVersion = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")).version;
const builtFrom = commit();

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
// (<outdir>/grpc-reflection/proto) and points the bundled module at that directory.
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

export function copyReflectionProtos(outdir) {
  return cp("node_modules/@grpc/reflection/build/proto", `${outdir}/grpc-reflection/proto`, { recursive: true });
}

/** Loaded lazily by some commands (top, pretty logs, `bridge user-config --qr`); kept out of the bundles that never need them. */
export const lazyPackages = ["ink", "react", "react/*", "ink-*", "pino-pretty", "qrcode"];

/**
 * Bundles `entry.in` into `<outdir>/<entry.out>.js`. `packages`: "external" leaves every
 * dependency in node_modules, "lazy-external" bundles all but lazyPackages, "all" bundles
 * everything, with what a dynamic import() reaches split into chunks beside it.
 */
export async function bundle(entry, outdir, packages, opts = {}) {
  const file = `${outdir}/${entry.out}.js`;
  const result = await build({
    bundle: true,
    metafile: true,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: opts.sourcemap ?? "linked",
    logLevel: "warning",
    define: { "process.env.PLEXD_VERSION": JSON.stringify(packageVersion), "process.env.PLEXD_BUILD_DATE": JSON.stringify(opts.buildDate ?? builtAt), "process.env.PLEXD_COMMIT": JSON.stringify(opts.commit ?? builtFrom) },
    entryPoints: { [entry.out]: entry.in },
    ...(packages === "all" ? { splitting: true, outdir, chunkNames: "chunks/[name]-[hash]" } : { outfile: file }),
    banner: bannerFor(entry.out),
    plugins: [reflectionProtos],
    // `compact` (agent, CLI): whitespace, comments and syntax minified, names kept, so stack traces
    // still name functions (the .map files give lines back). V8 keeps a script's source text for
    // the life of the process: the agent's is 2.9 -> 2.0 MB, and each CLI start parses less.
    // privhelper's bundle stays as written: it is the root code operators read.
    ...(entry.compact ? { minifyWhitespace: true, minifySyntax: true } : {}),
    // Ink loads react-devtools-core only when DEV=true; it is not a dependency of plexd.
    ...(packages === "external" ? { packages: "external" } : packages === "lazy-external" ? { external: lazyPackages } : { external: ["react-devtools-core"] }),
  });
  for (const f of Object.keys(result.metafile.outputs)) if (f.endsWith(".js")) await latin1Only(f);
  await chmod(file, 0o755);
}

// V8 keeps a script's source text for the life of the process: one byte per character when
// every character is Latin-1, two bytes per character otherwise. esbuild escapes non-ASCII
// characters in code but copies the comments it keeps as written, so one em dash in a comment
// doubled the agent bundle's ~300 KB in the agent's memory. Outside comments esbuild has
// already escaped everything, so the rewrite only ever touches comment text.
export async function latin1Only(file) {
  const text = await readFile(file, "utf8");
  const fixed = text.replace(/[^\t\n\r\u0020-\u00ff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  if (fixed !== text) await writeFile(file, fixed);
}
