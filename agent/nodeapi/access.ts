import { timingSafeEqual, createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { PlexdError } from "../../proto/lib/errors.js";

// Access classes of docs/node-api.md. The unix socket's mode (0660, group plexd) is
// the baseline gate: whoever can connect is a `reader`. `secrets` and `admin` need the
// kernel's record of the peer (SO_PEERCRED); when it cannot be read those calls are denied,
// never guessed. Over TCP a bearer token decides, and admin calls are never allowed there.

export type AccessClass = "reader" | "secrets" | "admin";

import type { PeerCred } from "../../proto/lib/peercred.js";

export type { PeerCred };

/** Who is calling, fixed per connection (unix) or per request (TCP token). */
export type Caller =
  | { transport: "unix"; cred: PeerCred | undefined }
  | { transport: "tcp"; token: "reader" | "secrets" | "none" | "wrong" };

export interface AccessPolicy {
  /** uids allowed the admin class besides 0: the plexd user. */
  adminUids: readonly number[];
  /** gid of group plexd-secrets, when it exists. */
  secretsGid: number | undefined;
  /** Supplementary groups of a process; defaults to /proc/<pid>/status `Groups:`. */
  groupsOf?: (pid: number) => Promise<number[]>;
}

export async function procGroups(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/status`, "utf8");
  const line = /^Groups:[ \t]*(.*)$/m.exec(text)?.[1] ?? "";
  return line
    .split(/\s+/)
    .filter((s) => s !== "")
    .map(Number)
    .filter((n) => Number.isInteger(n));
}

function lookupId(file: string, name: string, field: 2): number | undefined {
  try {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const parts = line.split(":");
      if (parts[0] === name) {
        const n = Number(parts[field]);
        return Number.isInteger(n) ? n : undefined;
      }
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** gid of a group from /etc/group, undefined when it does not exist. */
export function lookupGroupId(name: string): number | undefined {
  return lookupId("/etc/group", name, 2);
}

/** The host's policy: admin = uid 0, the plexd user and this process's own uid (the agent runs as plexd). */
export function defaultAccessPolicy(): AccessPolicy {
  const plexdUid = lookupId("/etc/passwd", "plexd", 2);
  const own = process.getuid?.();
  return {
    adminUids: [...new Set([plexdUid, own].filter((n): n is number => n !== undefined))],
    secretsGid: lookupId("/etc/group", "plexd-secrets", 2),
  };
}

/** Throws unauthenticated / permission_denied unless `caller` holds `cls`. */
export async function authorize(caller: Caller, cls: AccessClass, policy: AccessPolicy): Promise<void> {
  if (caller.transport === "tcp") {
    if (caller.token === "none" || caller.token === "wrong") {
      throw new PlexdError("unauthenticated", caller.token === "none" ? "bearer token required" : "invalid bearer token");
    }
    if (cls === "admin") throw new PlexdError("permission_denied", "admin calls are served only on the unix socket");
    if (cls === "secrets" && caller.token !== "secrets") throw new PlexdError("permission_denied", "reading secrets needs the secrets token");
    return;
  }
  if (cls === "reader") return;
  const cred = caller.cred;
  if (cred === undefined) throw new PlexdError("permission_denied", `${cls} calls need peer credentials, which are unavailable on this system`);
  if (cred.uid === 0) return;
  if (cls === "admin") {
    if (policy.adminUids.includes(cred.uid)) return;
    throw new PlexdError("permission_denied", "admin calls need uid 0 or the plexd user");
  }
  // secrets: uid 0 or member of plexd-secrets (primary or supplementary group).
  const gid = policy.secretsGid;
  if (gid !== undefined) {
    if (cred.gid === gid) return;
    const groups = await (policy.groupsOf ?? procGroups)(cred.pid).catch(() => [] as number[]);
    if (groups.includes(gid)) return;
  }
  throw new PlexdError("permission_denied", "reading secrets needs uid 0 or membership in group plexd-secrets");
}

/**
 * Classifies a TCP request's `Authorization: Bearer` header. Both tokens are compared in
 * constant time (hashing first makes the lengths equal, so the length leaks nothing either).
 */
export function classifyToken(header: string | undefined, tokens: { token: string; secretsToken?: string | undefined }): "reader" | "secrets" | "none" | "wrong" {
  const m = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (m === null || m[1] === undefined) return "none";
  const given = createHash("sha256").update(m[1]).digest();
  const eq = (expected: string | undefined): boolean =>
    expected !== undefined && expected !== "" && timingSafeEqual(given, createHash("sha256").update(expected).digest());
  const isSecrets = eq(tokens.secretsToken);
  const isReader = eq(tokens.token);
  if (isSecrets) return "secrets";
  if (isReader) return "reader";
  return "wrong";
}
