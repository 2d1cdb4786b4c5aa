import { run } from "./exec.js";

// The accounts plexd runs with (docs/architecture.md, `plexd install`) plus two for permission
// tests: an outsider, and a member of group plexd that is not the agent's user (it may reach
// privhelper's socket, so privhelper's own caller check is all that stands in its way). System-wide and persistent: created idempotently, never removed (.ci/run
// creates the same ones, with the same flags).

export interface Account {
  name: string;
  uid: number;
  gid: number;
}

export interface SystemUsers {
  /** System user `plexd`, primary group `plexd`, no login shell, home /var/lib/plexd (not created). */
  plexd: Account;
  /** Test user not in group `plexd` (nor `plexd-secrets`). */
  outsider: Account;
  /** Test user with supplementary group `plexd` (own primary group), not the agent's user. */
  member: Account;
  groups: { plexd: number; plexdSecrets: number };
}

const NOLOGIN = "/usr/sbin/nologin";

async function getent(db: "passwd" | "group", name: string): Promise<string[] | undefined> {
  const r = await run(["getent", db, name], { reject: false });
  if (r.exitCode !== 0) return undefined;
  return r.stdout.trim().split(":");
}

/** Runs a creating command unless `exists()`; tolerates a concurrent creator and lock contention. */
async function ensure(exists: () => Promise<boolean>, argv: string[]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    if (await exists()) return;
    const r = await run(argv, { reject: false });
    if (r.exitCode === 0 || (await exists())) return;
    // exit 1/10: /etc/passwd or /etc/group locked by a concurrent useradd/groupadd
    if (attempt >= 10) throw new Error(`${argv.join(" ")} failed (exit ${String(r.exitCode)}): ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 200 + attempt * 100));
  }
}

async function account(name: string): Promise<Account> {
  const pw = await getent("passwd", name);
  if (!pw) throw new Error(`user ${name} missing`);
  return { name, uid: Number(pw[2]), gid: Number(pw[3]) };
}

async function gid(name: string): Promise<number> {
  const gr = await getent("group", name);
  if (!gr) throw new Error(`group ${name} missing`);
  return Number(gr[2]);
}

export async function ensureSystemUsers(): Promise<SystemUsers> {
  const groupExists = (g: string) => async () => (await getent("group", g)) !== undefined;
  const userExists = (u: string) => async () => (await getent("passwd", u)) !== undefined;
  await ensure(groupExists("plexd"), ["groupadd", "--system", "plexd"]);
  await ensure(groupExists("plexd-secrets"), ["groupadd", "--system", "plexd-secrets"]);
  await ensure(userExists("plexd"), [
    "useradd",
    "--system",
    "--gid",
    "plexd",
    "--no-create-home",
    "--home-dir",
    "/var/lib/plexd",
    "--shell",
    NOLOGIN,
    "--comment",
    "plexd mesh agent",
    "plexd",
  ]);
  // Test accounts: system users with a group of their own, no home and no login shell.
  const testUser = (name: string, comment: string, groups: string[] = []) =>
    ensure(userExists(name), ["useradd", "--system", "--user-group", ...groups.flatMap((g) => ["--groups", g]), "--no-create-home", "--home-dir", "/nonexistent", "--shell", NOLOGIN, "--comment", comment, name]);
  await testUser("plexd-outsider", "plexd tests, not in group plexd");
  await testUser("plexd-member", "plexd tests, in group plexd but not the agent user", ["plexd"]);
  // Converge accounts made earlier by other means (e.g. a plain `useradd plexd`) to the same
  // shape as `plexd install`: home /var/lib/plexd (not created), no login shell, group plexd.
  const pw = await getent("passwd", "plexd");
  const plexdGid = await gid("plexd");
  if (pw && (pw[5] !== "/var/lib/plexd" || pw[6] !== NOLOGIN || Number(pw[3]) !== plexdGid)) {
    await run(["usermod", "--home", "/var/lib/plexd", "--shell", NOLOGIN, "--gid", "plexd", "plexd"]);
  }
  // The outsider must stay outside: drop any membership in plexd / plexd-secrets.
  for (const g of ["plexd", "plexd-secrets"]) {
    const members = (await getent("group", g))?.[3]?.split(",") ?? [];
    if (members.includes("plexd-outsider")) await run(["gpasswd", "--delete", "plexd-outsider", g]);
  }
  // The member must stay a member (supplementary, so its primary group is its own).
  if (!((await getent("group", "plexd"))?.[3]?.split(",") ?? []).includes("plexd-member")) await run(["gpasswd", "--add", "plexd-member", "plexd"]);
  const member = await account("plexd-member");
  if (member.gid === plexdGid) throw new Error("user plexd-member has primary group plexd; it must be a supplementary member");
  const out = await account("plexd-outsider");
  if (out.gid === plexdGid) throw new Error("user plexd-outsider has primary group plexd; it must not");
  return {
    plexd: await account("plexd"),
    outsider: await account("plexd-outsider"),
    member,
    groups: { plexd: await gid("plexd"), plexdSecrets: await gid("plexd-secrets") },
  };
}
