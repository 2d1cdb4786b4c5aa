import { readFileSync } from "node:fs";
import { join } from "node:path";

// Built bundles carry their V8 flags in their first line (`#!/usr/bin/env -S node FLAGS`,
// scripts/node-flags.json), so they are started as installed: the file itself. Benchmarks that
// add flags of their own (a memory probe, a flag under study) start `node`, and then pass the
// bundle's own flags first so nothing the product runs with is lost.

/** The node flags in a built bundle's first line. */
export function shippedFlags(bundle: string): string[] {
  const first = readFileSync(bundle, "utf8").slice(0, 512).split("\n", 1)[0] ?? "";
  const m = /^#!\/usr\/bin\/env(?: -S)? node(?<flags>(?: \S+)*)\s*$/.exec(first);
  if (!m) throw new Error(`${bundle}: unexpected first line ${JSON.stringify(first)}`);
  return (m.groups?.flags ?? "").split(" ").filter((f) => f !== "");
}

/** argv that starts `dir/name.js` as installed, or with `extraFlags` after its own. */
export function bundleArgv(dir: string, name: string, extraFlags: readonly string[] = []): string[] {
  return executableArgv(join(dir, `${name}.js`), extraFlags);
}

/** The same for an executable by path: a bundle, or an installed link to one (/usr/local/bin/plexd). */
export function executableArgv(file: string, extraFlags: readonly string[] = []): string[] {
  return extraFlags.length === 0 ? [file] : [process.execPath, ...shippedFlags(file), ...extraFlags, file];
}
