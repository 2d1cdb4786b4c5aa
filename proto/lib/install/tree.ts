import { chmodSync, chownSync, closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";

// What `plexd install` wants on disk, what is there, and the smallest list of changes between
// the two. Planning only reads; nothing changes until every input has been checked and the
// whole plan is known, and a second install over an unchanged tree plans nothing (no file is
// rewritten, no mtime moves).

export interface Owner {
  uid: number;
  gid: number;
}

export type Wanted =
  /** A directory; `onlyCreate`: one of the system's, made if missing but otherwise left alone. */
  | { kind: "dir"; path: string; mode: number; owner: Owner; onlyCreate?: boolean }
  /**
   * A regular file. `content` undefined: the file is only brought to owner and mode when it
   * exists (and not created). `keep`: an existing file's content is left as it is.
   */
  | { kind: "file"; path: string; mode: number; owner: Owner; content?: Buffer; keep?: boolean }
  | { kind: "link"; path: string; target: string }
  /** Must not exist (a file, link or whole directory tree). */
  | { kind: "absent"; path: string };

export type Seen =
  | { kind: "absent" }
  | { kind: "dir" | "file" | "other"; mode: number; uid: number; gid: number }
  | { kind: "link"; target: string };

export type Action =
  | { op: "mkdir"; path: string; mode: number; owner: Owner }
  | { op: "write"; path: string; mode: number; owner: Owner; content: Buffer; replaces: boolean }
  | { op: "chmod"; path: string; mode: number }
  | { op: "chown"; path: string; owner: Owner }
  | { op: "link"; path: string; target: string }
  | { op: "remove"; path: string };

export function see(path: string): Seen {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR") return { kind: "absent" };
    throw err;
  }
  if (st.isSymbolicLink()) return { kind: "link", target: readlinkSync(path) };
  const kind = st.isDirectory() ? "dir" : st.isFile() ? "file" : "other";
  return { kind, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
}

/** The actions that take `seen` (what is at w.path) to `w`. `read` gives an existing file's bytes. */
export function planEntry(w: Wanted, seen: Seen, read: () => Buffer): Action[] {
  const out: Action[] = [];
  if (w.kind === "absent") return seen.kind === "absent" ? [] : [{ op: "remove", path: w.path }];
  if (w.kind === "link") {
    if (seen.kind === "link" && seen.target === w.target) return [];
    if (seen.kind === "dir") out.push({ op: "remove", path: w.path });
    return [...out, { op: "link", path: w.path, target: w.target }];
  }
  if (w.kind === "dir") {
    if (seen.kind !== "dir") {
      if (seen.kind !== "absent") out.push({ op: "remove", path: w.path });
      return [...out, { op: "mkdir", path: w.path, mode: w.mode, owner: w.owner }];
    }
    return w.onlyCreate === true ? out : [...out, ...fixAttrs(w, seen)];
  }
  if (seen.kind !== "file") {
    if (w.content === undefined) return [];
    if (seen.kind !== "absent") out.push({ op: "remove", path: w.path });
    return [...out, { op: "write", path: w.path, mode: w.mode, owner: w.owner, content: w.content, replaces: false }];
  }
  if (w.content !== undefined && w.keep !== true && !read().equals(w.content)) {
    return [{ op: "write", path: w.path, mode: w.mode, owner: w.owner, content: w.content, replaces: true }];
  }
  return fixAttrs(w, seen);
}

function fixAttrs(w: { path: string; mode: number; owner: Owner }, seen: { mode: number; uid: number; gid: number }): Action[] {
  const ownerWrong = seen.uid !== w.owner.uid || seen.gid !== w.owner.gid;
  const out: Action[] = ownerWrong ? [{ op: "chown", path: w.path, owner: w.owner }] : [];
  // After a chown too: it clears set-id bits.
  if (ownerWrong || seen.mode !== w.mode) out.push({ op: "chmod", path: w.path, mode: w.mode });
  return out;
}

/** Plans every entry against the disk, in order (parents before children). */
export function plan(wanted: readonly Wanted[]): Action[] {
  return wanted.flatMap((w) => planEntry(w, see(w.path), () => readFileSync(w.path)));
}

/** Carries the actions out. Files are replaced atomically (written beside, then renamed). */
export function apply(actions: readonly Action[]): void {
  for (const a of actions) {
    switch (a.op) {
      case "mkdir":
        mkdirSync(dirname(a.path), { recursive: true, mode: 0o755 });
        mkdirSync(a.path, { mode: a.mode });
        chownSync(a.path, a.owner.uid, a.owner.gid);
        chmodSync(a.path, a.mode);
        break;
      case "write":
        writeAtomic(a.path, a.content, a.mode, a.owner);
        break;
      case "chmod":
        chmodSync(a.path, a.mode);
        break;
      case "chown":
        chownSync(a.path, a.owner.uid, a.owner.gid);
        break;
      case "link": {
        mkdirSync(dirname(a.path), { recursive: true, mode: 0o755 });
        const tmp = join(dirname(a.path), `.${process.pid}.plexd-install.tmp`);
        rmSync(tmp, { force: true });
        symlinkSync(a.target, tmp);
        renameSync(tmp, a.path);
        break;
      }
      case "remove":
        rmSync(a.path, { recursive: true, force: true });
        break;
    }
  }
}

function writeAtomic(path: string, content: Buffer, mode: number, owner: Owner): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = join(dirname(path), `.${process.pid}.plexd-install.tmp`);
  // 0600 until owner and mode are right: a token is never readable by anyone else meanwhile.
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chownSync(tmp, owner.uid, owner.gid);
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

/** One line per action, for the operator: what changed where. */
export function describe(a: Action, names: (o: Owner) => string): string {
  const m = (mode: number): string => mode.toString(8).padStart(4, "0");
  switch (a.op) {
    case "mkdir":
      return `created ${a.path}/ (${names(a.owner)} ${m(a.mode)})`;
    case "write":
      return `${a.replaces ? "replaced" : "wrote"} ${a.path} (${names(a.owner)} ${m(a.mode)})`;
    case "chmod":
      return `set mode ${m(a.mode)} on ${a.path}`;
    case "chown":
      return `set owner ${names(a.owner)} on ${a.path}`;
    case "link":
      return `linked ${a.path} -> ${a.target}`;
    case "remove":
      return `removed ${a.path}`;
  }
}
