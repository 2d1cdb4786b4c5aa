// A Node single-executable application of the CLI (`release/sea/plexd`), built only to weigh
// it against the release tarball's bundles run by the system `node` (docs/install.md says
// which was chosen and why; `npm run bench -- cold-start` measures both). Node 20's SEA runs
// one CommonJS script, so the CLI is bundled as CommonJS with its top-level await turned into
// a plain call; `plexd top` and the agent hand-off (both loaded by path) do not work in it.
import { execFileSync } from "node:child_process";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { build } from "esbuild";
import { commit, packageVersion } from "./bundle.mjs";

const dir = process.env.PLEXD_SEA_DIR ?? "release/sea";
await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
const noTopLevelAwait = {
  name: "no-top-level-await",
  setup(b) {
    b.onLoad({ filter: /cli[\\/]main\.ts$/ }, async (args) => ({
      contents: (await readFile(args.path, "utf8")).replace("await program.parseAsync(process.argv);", "void program.parseAsync(process.argv);"),
      loader: "ts",
    }));
  },
};
await build({
  entryPoints: ["cli/main.ts"],
  outfile: `${dir}/plexd-cli.cjs`,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  logLevel: "error",
  external: ["ink", "react", "react/*", "ink-*", "pino-pretty"],
  define: { "process.env.PLEXD_VERSION": JSON.stringify(packageVersion), "process.env.PLEXD_BUILD_DATE": JSON.stringify(new Date().toISOString()), "process.env.PLEXD_COMMIT": JSON.stringify(commit()), "import.meta.url": "__filename" },
  plugins: [noTopLevelAwait],
});
await writeFile(`${dir}/sea-config.json`, JSON.stringify({ main: `${dir}/plexd-cli.cjs`, output: `${dir}/sea-prep.blob`, disableExperimentalSEAWarning: true, useCodeCache: true }));
execFileSync(process.execPath, ["--experimental-sea-config", `${dir}/sea-config.json`], { stdio: "inherit" });
await copyFile(process.execPath, `${dir}/plexd`);
// postject (a devDependency) writes the blob into the copy of node; POSTJECT names another one.
execFileSync(process.env.POSTJECT ?? "node_modules/.bin/postject", [`${dir}/plexd`, "NODE_SEA_BLOB", `${dir}/sea-prep.blob`, "--sentinel-fuse", "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2"], { stdio: ["ignore", "ignore", "inherit"] });
process.stdout.write(`${dir}/plexd\n`);
