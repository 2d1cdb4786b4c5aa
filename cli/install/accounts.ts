import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Owner, Wanted } from "./tree.js";

// The accounts plexd runs under: system user `plexd` (no login shell, home /var/lib/plexd,
// primary group `plexd`) and groups `plexd` and `plexd-secrets`. On the host they are made by
// the system's own tools (groupadd/useradd: locking, nscd, the distribution's id ranges).
// Installing into a directory tree (`--root`) must not touch the host's accounts, so then the
// tree's own etc/passwd, group (and shadow, gshadow when the tree has them) get the lines
// useradd would write, with ids picked like `useradd --system`: the highest free id below 1000.

export const user = "plexd";
export const groups = ["plexd", "plexd-secrets"] as const;
export const home = "/var/lib/plexd";
const shell = "/usr/sbin/nologin";
const comment = "plexd mesh agent";

export interface AccountIds {
  plexd: Owner;
  root: Owner;
  /** gid by group name, for messages. */
  groupNames: Map<number, string>;
  userNames: Map<number, string>;
}

export interface AccountFiles {
  passwd: string;
  group: string;
  shadow?: string;
  gshadow?: string;
}

interface Entry {
  name: string;
  id: number;
  fields: string[];
}

function entries(text: string): Entry[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#"))
    .map((l) => {
      const fields = l.split(":");
      return { name: fields[0] ?? "", id: Number(fields[2]), fields };
    });
}

function append(text: string, line: string): string {
  return text === "" || text.endsWith("\n") ? `${text}${line}\n` : `${text}\n${line}\n`;
}

/** The tree's account files with plexd's user and groups added where missing (unchanged when present). */
export function addAccounts(files: AccountFiles): AccountFiles {
  const out = { ...files };
  const usedGids = new Set(entries(files.group).map((e) => e.id));
  const usedUids = new Set(entries(files.passwd).map((e) => e.id));
  const freeId = (): number => {
    for (let id = 999; id >= 100; id--) if (!usedGids.has(id) && !usedUids.has(id)) return id;
    throw new Error("no free system id (100-999) in the tree's etc/passwd and etc/group");
  };
  for (const g of groups) {
    if (entries(out.group).some((e) => e.name === g)) continue;
    const gid = freeId();
    usedGids.add(gid);
    out.group = append(out.group, `${g}:x:${gid}:`);
    if (out.gshadow !== undefined && !entries(out.gshadow).some((e) => e.name === g)) out.gshadow = append(out.gshadow, `${g}:!::`);
  }
  if (!entries(out.passwd).some((e) => e.name === user)) {
    const gid = entries(out.group).find((e) => e.name === "plexd")!.id;
    // The user's id matches its group's when that is free, as useradd does.
    const uid = usedUids.has(gid) ? freeId() : gid;
    out.passwd = append(out.passwd, `${user}:x:${uid}:${gid}:${comment}:${home}:${shell}`);
    if (out.shadow !== undefined && !entries(out.shadow).some((e) => e.name === user)) out.shadow = append(out.shadow, `${user}:!::::::`);
  }
  return out;
}

/** The tree's account files without plexd's user and groups. */
export function removeAccounts(files: AccountFiles): AccountFiles {
  const names = new Set<string>([user, ...groups]);
  const drop = (text: string | undefined): string | undefined =>
    text === undefined
      ? undefined
      : text
          .split("\n")
          .filter((l) => !names.has(l.split(":")[0] ?? ""))
          .join("\n");
  const out: AccountFiles = { passwd: drop(files.passwd)!, group: drop(files.group)! };
  if (files.shadow !== undefined) out.shadow = drop(files.shadow)!;
  if (files.gshadow !== undefined) out.gshadow = drop(files.gshadow)!;
  return out;
}

/** Ids of root and plexd as `files` define them; undefined for plexd when it is not there. */
export function idsFrom(files: AccountFiles): AccountIds | undefined {
  const pw = entries(files.passwd);
  const gr = entries(files.group);
  const u = pw.find((e) => e.name === user);
  const g = gr.find((e) => e.name === "plexd");
  if (u === undefined || g === undefined) return undefined;
  return {
    plexd: { uid: u.id, gid: g.id },
    root: { uid: 0, gid: 0 },
    userNames: new Map([...pw.map((e) => [e.id, e.name] as const), [0, "root"]]),
    groupNames: new Map([...gr.map((e) => [e.id, e.name] as const), [0, "root"]]),
  };
}

const names = ["passwd", "group", "shadow", "gshadow"] as const;
const modes: Record<(typeof names)[number], number> = { passwd: 0o644, group: 0o644, shadow: 0o640, gshadow: 0o640 };

export function readTreeAccounts(root: string): AccountFiles {
  const read = (n: string): string | undefined => (existsSync(join(root, "etc", n)) ? readFileSync(join(root, "etc", n), "utf8") : undefined);
  const files: AccountFiles = { passwd: read("passwd") ?? "", group: read("group") ?? "" };
  const shadow = read("shadow");
  const gshadow = read("gshadow");
  if (shadow !== undefined) files.shadow = shadow;
  if (gshadow !== undefined) files.gshadow = gshadow;
  return files;
}

/** Tree entries that write `files` back with the owner and mode each file has (only what differs is rewritten). */
export function treeAccountEntries(root: string, files: AccountFiles): Wanted[] {
  const shadowGid = entries(files.group).find((e) => e.name === "shadow")?.id ?? 0;
  return names
    .filter((n) => files[n] !== undefined && (files[n] !== "" || existsSync(join(root, "etc", n))))
    .map((n) => {
      const path = join(root, "etc", n);
      const st = existsSync(path) ? statSync(path) : undefined;
      const owner = st ? { uid: st.uid, gid: st.gid } : { uid: 0, gid: n === "shadow" || n === "gshadow" ? shadowGid : 0 };
      return { kind: "file" as const, path, mode: st ? st.mode & 0o7777 : modes[n], owner, content: Buffer.from(files[n]!) };
    });
}

// ---------------------------------------------------------------- the host

function getent(db: "passwd" | "group", name: string): string | undefined {
  try {
    return execFileSync("getent", [db, name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return undefined;
  }
}

/** Creates what is missing with groupadd/useradd; returns the lines of what it did. */
export function ensureHostAccounts(): string[] {
  const done: string[] = [];
  for (const g of groups) {
    if (getent("group", g) !== undefined) continue;
    execFileSync("groupadd", ["--system", g], { stdio: ["ignore", "ignore", "inherit"] });
    done.push(`created group ${g}`);
  }
  if (getent("passwd", user) === undefined) {
    execFileSync("useradd", ["--system", "--gid", "plexd", "--no-create-home", "--home-dir", home, "--shell", shell, "--comment", comment, user], { stdio: ["ignore", "ignore", "inherit"] });
    done.push(`created user ${user}`);
  }
  return done;
}

export function hostIds(): AccountIds | undefined {
  const pw = getent("passwd", user);
  const gr = getent("group", "plexd");
  if (pw === undefined || gr === undefined) return undefined;
  const ids = idsFrom({ passwd: pw, group: gr });
  if (ids === undefined) return undefined;
  const secrets = getent("group", "plexd-secrets");
  if (secrets !== undefined) for (const e of entries(secrets)) ids.groupNames.set(e.id, e.name);
  return ids;
}

export function removeHostAccounts(): string[] {
  const done: string[] = [];
  if (getent("passwd", user) !== undefined) {
    execFileSync("userdel", [user], { stdio: ["ignore", "ignore", "inherit"] });
    done.push(`removed user ${user}`);
  }
  // userdel may already have removed the user's group of the same name.
  for (const g of groups) {
    if (getent("group", g) === undefined) continue;
    execFileSync("groupdel", [g], { stdio: ["ignore", "ignore", "inherit"] });
    done.push(`removed group ${g}`);
  }
  return done;
}
