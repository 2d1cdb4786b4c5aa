// The two shipped units as data: parsed directives for tests that apply or check them, and
// systemd-analyze's own verdicts (verify, security --offline) on the real files.
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { execa } from "execa";

export const unitDir = resolve(import.meta.dirname, "../../deploy/systemd");
export const unitFiles = { agent: join(unitDir, "plexd.service"), privhelper: join(unitDir, "plexd-privhelper.service") } as const;

/** Directives in file order: section → key → values (one per line that sets the key). */
export type Unit = Map<string, Map<string, string[]>>;

export function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = unit.get(header[1]!) ?? new Map<string, string[]>();
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf("=");
    if (!section || eq < 0) throw new Error(`unit line outside a section or without "=": ${line}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return unit;
}

export const readUnit = (file: string): Unit => parseUnit(readFileSync(file, "utf8"));

/** The last value of a [Service] key (systemd's meaning for scalar settings). */
export function scalar(unit: Unit, key: string): string | undefined {
  return unit.get("Service")?.get(key)?.at(-1);
}

/** A space-separated list setting: values accumulate, an empty assignment resets. */
export function list(unit: Unit, key: string): string[] {
  let out: string[] = [];
  for (const v of unit.get("Service")?.get(key) ?? []) out = v === "" ? [] : [...out, ...v.split(/\s+/)];
  return out;
}

export const yes = (v: string | undefined): boolean => v !== undefined && ["yes", "true", "on", "1"].includes(v.toLowerCase());

/** `systemd-analyze security --offline=yes`: the overall exposure figure and the full table. */
export async function exposure(file: string): Promise<{ figure: number; table: string }> {
  const r = await execa("systemd-analyze", ["security", "--offline=yes", "--no-pager", file], { reject: false, env: { SYSTEMD_COLORS: "0" } });
  const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(r.stdout);
  if (!m) throw new Error(`systemd-analyze security printed no figure (exit ${String(r.exitCode)}):\n${r.stdout}\n${r.stderr}`);
  return { figure: Number(m[1]), table: r.stdout };
}

/**
 * `systemd-analyze verify` of both units as installed, in a throw-away root: the units under
 * /etc/systemd/system, stub executables where ExecStart and ExecReload point, and a copy of
 * systemd's own unit directory (for the targets the units order themselves after). Returns
 * what verify printed; any output is a finding (unknown keys, bad values, missing commands).
 */
export async function verifyUnits(): Promise<{ exitCode: number | undefined; output: string }> {
  const root = mkdtempSync(join(tmpdir(), "plexd-unit-verify-"));
  try {
    for (const d of ["usr/local/bin", "usr/bin", "usr/lib/systemd", "etc/systemd/system"]) mkdirSync(join(root, d), { recursive: true });
    symlinkSync("usr/bin", join(root, "bin"));
    symlinkSync("usr/lib", join(root, "lib"));
    for (const exe of ["usr/local/bin/plexd", "usr/local/bin/plexd-privhelper", "usr/bin/kill"]) {
      writeFileSync(join(root, exe), "#!/bin/sh\n");
      chmodSync(join(root, exe), 0o755);
    }
    await execa("cp", ["-r", "/usr/lib/systemd/system", join(root, "usr/lib/systemd/")]);
    for (const f of Object.values(unitFiles)) copyFileSync(f, join(root, "etc/systemd/system", basename(f)));
    const r = await execa("systemd-analyze", ["verify", `--root=${root}`, ...Object.values(unitFiles).map((f) => basename(f))], { reject: false, all: true, env: { SYSTEMD_COLORS: "0" } });
    return { exitCode: r.exitCode, output: r.all ?? "" };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
