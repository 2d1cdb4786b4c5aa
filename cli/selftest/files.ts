// The plexd accounts and the owners and modes of the installed files (docs/self-test.md has
// the table): secrets readable by others, or files the agent cannot read, make a host not
// ready; a looser mode on a non-secret file only degraded.
import { lstat, readdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { runQuiet } from "./host.js";
import type { SelfTestConfig } from "./config.js";
import type { CheckResult, CheckStatus } from "./verdict.js";

export interface Ids {
  plexdUid?: number;
  plexdGid?: number;
}

async function getent(db: "passwd" | "group", name: string): Promise<string[] | undefined> {
  const r = await runQuiet("getent", [db, name]);
  return r.code === 0 ? r.output.split(":") : undefined;
}

export async function checkAccounts(): Promise<{ result: CheckResult; ids: Ids }> {
  const [user, group, secrets] = [await getent("passwd", "plexd"), await getent("group", "plexd"), await getent("group", "plexd-secrets")];
  const ids: Ids = { ...(user ? { plexdUid: Number(user[2]) } : {}), ...(group ? { plexdGid: Number(group[2]) } : {}) };
  const missing = [...(user ? [] : ["user plexd"]), ...(group ? [] : ["group plexd"])];
  if (missing.length > 0) return { ids, result: { name: "accounts", status: "fail", detail: `${missing.join(" and ")} missing (plexd install creates them)` } };
  if (Number(user![3]) !== ids.plexdGid) return { ids, result: { name: "accounts", status: "fail", detail: `user plexd's primary group is ${user![3]}, not plexd (${ids.plexdGid})` } };
  if (!secrets) return { ids, result: { name: "accounts", status: "warn", detail: "user and group plexd present; group plexd-secrets missing: no local caller can read secrets" } };
  return { ids, result: { name: "accounts", status: "ok", detail: `user plexd (uid ${ids.plexdUid}), groups plexd (gid ${ids.plexdGid}) and plexd-secrets` } };
}

/** What a path should be: owner (uid, or "plexd"), group, exact mode; and how bad a deviation is. */
export interface Expectation {
  path: string;
  uid: number | undefined;
  gid: number | undefined;
  mode: number;
  /** A secret: any bit for others (or group beyond `mode`) is a fail, not a warn. */
  secret: boolean;
}

const octal = (m: number): string => `0${(m & 0o7777).toString(8)}`;

/** Compares one stat with its expectation; undefined when it matches. */
export function judgeMode(e: Expectation, st: { uid: number; gid: number; mode: number }): { status: CheckStatus; detail: string } | undefined {
  const problems: { status: CheckStatus; text: string }[] = [];
  const mode = st.mode & 0o7777;
  if (e.uid !== undefined && st.uid !== e.uid) problems.push({ status: "fail", text: `owner uid ${st.uid}, expected ${e.uid}` });
  if (e.gid !== undefined && st.gid !== e.gid) problems.push({ status: "fail", text: `group gid ${st.gid}, expected ${e.gid}` });
  const extra = mode & ~e.mode;
  const missing = e.mode & ~mode;
  // Write access for others, or any access beyond the expected mode to a secret, exposes it.
  if (extra !== 0) problems.push({ status: e.secret || (extra & 0o022) !== 0 ? "fail" : "warn", text: `mode ${octal(mode)} grants more than ${octal(e.mode)}` });
  if (missing !== 0) problems.push({ status: "fail", text: `mode ${octal(mode)} lacks bits of ${octal(e.mode)}` });
  if (problems.length === 0) return undefined;
  return { status: problems.some((p) => p.status === "fail") ? "fail" : "warn", detail: `${e.path}: ${problems.map((p) => p.text).join(", ")}` };
}

type Found = { status: CheckStatus; detail: string };

async function judgePath(e: Expectation, absent: Found): Promise<Found> {
  try {
    return judgeMode(e, await lstat(e.path)) ?? { status: "ok", detail: `${e.path} ${octal(e.mode)}` };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return absent;
    return { status: "warn", detail: `${e.path}: ${code ?? (err as Error).message} (run self-test as root to check)` };
  }
}

const merge = (name: string, found: Found[]): CheckResult => {
  const status: CheckStatus = found.some((f) => f.status === "fail") ? "fail" : found.some((f) => f.status === "warn") ? "warn" : "ok";
  return { name, status, detail: found.filter((f) => f.status === status).map((f) => f.detail).join("; ") };
};

/** Everything below data_dir: files 0600 and directories 0700, owned by plexd (ssh_host_key.pub may be 0644). */
async function walkDataDir(dir: string, uid: number | undefined): Promise<Found[]> {
  const found: Found[] = [];
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    return [{ status: "warn", detail: `${dir}: ${(err as NodeJS.ErrnoException).code ?? ""} (run self-test as root to check)` }];
  }
  for (const e of entries) {
    const path = join(dir, e);
    const st = await lstat(path).catch(() => undefined);
    if (!st) continue;
    const expect: Expectation = { path, uid, gid: undefined, mode: st.isDirectory() ? 0o700 : basename(path) === "ssh_host_key.pub" ? 0o644 : 0o600, secret: true };
    // Read-only (0400) copies are as private as 0600 ones.
    const bad = judgeMode(expect, { ...st, mode: st.isFile() && (st.mode & 0o777) === 0o400 ? 0o600 : st.mode });
    if (bad) found.push(bad);
    if (st.isDirectory()) found.push(...(await walkDataDir(path, uid)));
  }
  return found;
}

export async function checkFiles(cfg: SelfTestConfig, ids: Ids): Promise<CheckResult[]> {
  const { plexdUid: uid, plexdGid: gid } = ids;
  const results: CheckResult[] = [];
  const config = await judgePath({ path: cfg.configFile, uid: 0, gid, mode: 0o640, secret: false }, { status: "fail", detail: `${cfg.configFile} missing (plexd install writes it)` });
  results.push({ name: "config-file", ...(cfg.readable || config.status !== "ok" ? config : { status: "fail", detail: `${cfg.configFile}: ${cfg.problem ?? "unreadable"}` }) });
  results.push({ name: "token-file", ...(await judgePath({ path: cfg.tokenFile, uid: 0, gid, mode: 0o640, secret: true }, { status: "ok", detail: `${cfg.tokenFile} absent (removed after registration, or not yet written)` })) });
  const data = await judgePath({ path: cfg.dataDir, uid, gid: undefined, mode: 0o700, secret: true }, { status: "ok", detail: `${cfg.dataDir} absent (the unit creates it on first start)` });
  results.push(merge("data-dir", [data, ...(data.status === "ok" && !data.detail.includes("absent") ? await walkDataDir(cfg.dataDir, uid) : [])]));
  const notRunning = (p: string): Found => ({ status: "ok", detail: `${p} absent (not running)` });
  results.push(
    merge("sockets", [
      await judgePath({ path: dirname(cfg.privSocket), uid: 0, gid, mode: 0o750, secret: false }, notRunning(dirname(cfg.privSocket))),
      await judgePath({ path: cfg.privSocket, uid: 0, gid, mode: 0o660, secret: false }, notRunning(cfg.privSocket)),
      await judgePath({ path: cfg.nodeApiSocket, uid, gid, mode: 0o660, secret: false }, notRunning(cfg.nodeApiSocket)),
    ]),
  );
  return results;
}
