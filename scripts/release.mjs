// `npm run release`: the installable artifact. For this machine's architecture it writes
// release/plexd-<version>-linux-<arch>.tar.gz and release/SHA256SUMS. The tarball runs with
// the system's `node` (20.19 or later) and nothing else: every bundle carries its
// dependencies (those a command loads lazily, `plexd top`'s Ink and React, sit in chunks
// beside it; pino-pretty in a private node_modules of one file), plus the SO_PEERCRED addon
// built here. Layout (docs/install.md):
//
//   plexd-<version>-linux-<arch>/
//     bin/plexd, plexd-agent, plexd-privhelper, plexd-mockcp   (links into lib/plexd)
//     lib/plexd/          bundles, addon, protos, systemd/*.service, doc/*.md, SHA256SUMS
//     install.sh
//
// lib/plexd is what `plexd install` copies to /usr/local/lib/plexd, checked against its own
// SHA256SUMS (every file in it), so an installed host holds a complete release again.
//
// The tarball is reproducible for a commit: names sorted, owner root, times the commit's.
// Only the addon is specific to the architecture; another one needs its compiler and Node
// headers, so it is built on a machine of that architecture.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { build } from "esbuild";
import { bundle, commit, copyReflectionProtos } from "./bundle.mjs";

const pkg = JSON.parse(await readFile("package.json", "utf8"));
const archOf = { x64: "amd64", arm64: "arm64" };
const arch = archOf[process.arch];
if (arch === undefined) throw new Error(`no release for architecture ${process.arch}`);
const name = `plexd-${pkg.version}-linux-${arch}`;
const out = process.env.PLEXD_RELEASE_DIR ?? "release";
const stage = `${out}/stage/${name}`;
const lib = `${stage}/lib/plexd`;

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8", ...opts });
}
function commitTime() {
  try {
    return sh("git", ["log", "-1", "--format=%ct"]).trim();
  } catch {
    return String(Math.floor(Date.now() / 1000));
  }
}
const epoch = commitTime();
const stamp = { commit: commit(), buildDate: new Date(Number(epoch) * 1000).toISOString(), sourcemap: false };

sh("npm", ["run", "--silent", "gen"], { stdio: "inherit" });
const addon = "proto/lib/peercred/build/Release/peercred.node";
if (!existsSync(addon)) sh("npm", ["run", "--silent", "build:native"], { stdio: "inherit" });

await rm(`${out}/stage`, { recursive: true, force: true });
await mkdir(lib, { recursive: true });
await copyReflectionProtos(lib);
const entries = [
  { in: "cli/entry.ts", out: "plexd", compact: true },
  { in: "cli/main.ts", out: "plexd-cli", compact: true },
  { in: "agent/main.ts", out: "plexd-agent", compact: true },
  { in: "privhelper/main.ts", out: "plexd-privhelper" },
  { in: "mockcp/main.ts", out: "plexd-mockcp" },
];
for (const e of entries) await bundle(e, lib, "all", stamp);
// Pretty log lines on a terminal: the agent requires pino-pretty by name (agent/util/log.ts).
await build({
  entryPoints: ["node_modules/pino-pretty/index.js"],
  outfile: `${lib}/node_modules/pino-pretty/index.js`,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  logLevel: "warning",
});
await writeFile(`${lib}/node_modules/pino-pretty/package.json`, JSON.stringify({ name: "pino-pretty", main: "index.js" }) + "\n");
// proto/lib/peercred.ts looks for it beside the bundle that loads it.
await copyFile(addon, `${lib}/peercred.node`);
await chmod(`${lib}/peercred.node`, 0o644);

await mkdir(`${stage}/bin`);
for (const e of entries.filter((x) => x.out !== "plexd-cli")) await symlink(`../lib/plexd/${e.out}.js`, `${stage}/bin/${e.out}`);
await mkdir(`${lib}/systemd`);
for (const u of ["plexd.service", "plexd-privhelper.service"]) await copyFile(`deploy/systemd/${u}`, `${lib}/systemd/${u}`);
await mkdir(`${lib}/doc`);
// Every operator page, flat in one directory (/usr/local/share/doc/plexd once installed): the
// docs index (docs/README.md) becomes index.md beside the project's README.md, and the links
// between them are made to fit.
const page = (f) => (f === "README.md" ? "index.md" : f);
const readmeLinks = (text) => text.replaceAll("](docs/README.md", "](index.md").replaceAll("](docs/", "](");
const pageLinks = (text) => text.replaceAll("](README.md", "](index.md").replaceAll("](../README.md", "](README.md");
await writeFile(`${lib}/doc/README.md`, readmeLinks(await readFile("README.md", "utf8")));
for (const f of (await readdir("docs")).filter((x) => x.endsWith(".md"))) {
  await writeFile(`${lib}/doc/${page(f)}`, pageLinks(await readFile(`docs/${f}`, "utf8")));
}
await copyFile("deploy/install.sh", `${stage}/install.sh`);
await chmod(`${stage}/install.sh`, 0o755);
await writeFile(`${lib}/SHA256SUMS`, await sumsOf(lib));

// Reproducible: the same commit gives the same bytes.
sh("chmod", ["-R", "u+rwX,go+rX,go-w", stage]);
const tarball = `${name}.tar.gz`;

const tar = sh("tar", ["--sort=name", "--owner=0", "--group=0", "--numeric-owner", `--mtime=@${epoch}`, "-C", `${out}/stage`, "-cf", "-", name], {
  encoding: "buffer",
  maxBuffer: 1 << 30,
});
const gz = sh("gzip", ["-9n"], { input: tar, encoding: "buffer", maxBuffer: 1 << 30, stdio: ["pipe", "pipe", "inherit"] });
await writeFile(`${out}/${tarball}`, gz);
const sums = `${createHash("sha256").update(gz).digest("hex")}  ${tarball}\n`;
await writeFile(`${out}/SHA256SUMS`, sums);
process.stdout.write(`${out}/${tarball} (${(gz.length / 1e6).toFixed(1)} MB)\n${out}/SHA256SUMS\n`);

async function sumsOf(dir) {
  const files = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
  const lines = await Promise.all(files.sort().map(async (f) => `${createHash("sha256").update(await readFile(join(dir, f))).digest("hex")}  ${f}\n`));
  return lines.join("");
}
