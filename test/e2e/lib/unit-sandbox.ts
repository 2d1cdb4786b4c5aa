// A shipped systemd unit's restrictions, applied without systemd as PID 1: the [Service]
// directives that map onto unshare, mount and setpriv become a wrapper around a process's
// argv (run as root, it drops to the unit's user itself). Generated from the unit file, so the
// test cannot drift from what ships; a directive this file does not know fails the test, and
// every known one is either applied here or listed as checked only statically (seccomp, BPF,
// cgroup device rules and systemd's own bookkeeping have no unshare/setpriv counterpart).
import { execFileSync } from "node:child_process";
import { dirname } from "node:path";
import { list, readUnit, scalar, yes, type Unit } from "../../support/systemd-unit.js";
import { seccompApplied, seccompLauncher } from "./unit-seccomp.js";

/** Directives enforced by the wrapper below. */
export const applied = [
  "User", "Group", "SupplementaryGroups", "CapabilityBoundingSet", "AmbientCapabilities", "NoNewPrivileges",
  "UMask", "LimitNOFILE", "ProtectSystem", "ReadWritePaths", "RuntimeDirectory", "StateDirectory", "PrivateTmp",
  "PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectHome", "ProtectKernelTunables", "ProtectControlGroups",
  "ProtectKernelModules", "ProtectKernelLogs", "ProtectProc", "ProcSubset", "PrivateMounts", "ProtectHostname", "PrivateIPC",
  // By a seccomp launcher built from the unit (lib/unit-seccomp.ts).
  ...seccompApplied,
] as const;

/**
 * Directives not applied here: seccomp rules the launcher does not rebuild, and systemd's own
 * process management. Checked statically (systemd-analyze verify/security in
 * test/unit/units-security.test.ts).
 */
export const staticOnly = [
  "Type", "ExecStart", "ExecReload", "EnvironmentFile", "Restart", "RestartSec", "KillMode",
  "RuntimeDirectoryMode", "RuntimeDirectoryPreserve", "StateDirectoryMode",
  "RestrictSUIDSGID", "RestrictRealtime", "MemoryDenyWriteExecute", "ProtectClock", "KeyringMode", "RemoveIPC",
] as const;

/** Paths of the unit (/var/lib/plexd, /run/plexd, ...) → where this test keeps them. */
export type PathMap = Readonly<Record<string, string>>;

export interface SandboxOptions {
  /** Unit path → test path; an unmapped unit path is used as is. */
  paths: PathMap;
  /** Directories under /tmp the process must still see through its private /tmp (the test's node root). */
  keepInTmp: readonly string[];
}

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

function ids(db: "passwd" | "group", name: string): number {
  const line = execFileSync("getent", [db, name], { encoding: "utf8" });
  const id = Number(line.split(":")[2]);
  if (!Number.isInteger(id)) throw new Error(`${db} entry ${name} not found`);
  return id;
}

function checkKnown(unit: Unit): void {
  const known = new Set<string>([...applied, ...staticOnly]);
  const unknown = [...(unit.get("Service")?.keys() ?? [])].filter((k) => !known.has(k));
  if (unknown.length > 0) throw new Error(`unit-sandbox: no mapping for [Service] ${unknown.join(", ")}: apply it here or list it as static-only`);
}

/** setpriv flags for User/Group/SupplementaryGroups/capabilities/NoNewPrivileges. */
function setprivArgs(unit: Unit): string[] {
  const user = scalar(unit, "User") ?? "root";
  const group = scalar(unit, "Group") ?? user;
  // systemd: the user's own supplementary groups (initgroups) plus SupplementaryGroups=.
  const own = execFileSync("id", ["-G", user], { encoding: "utf8" }).trim().split(/\s+/).map(Number);
  const groups = [...new Set([...own.filter((g) => g !== ids("group", group)), ...list(unit, "SupplementaryGroups").map((g) => ids("group", g))])];
  const caps = (key: string) => list(unit, key).map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`);
  return [
    "setpriv", `--reuid=${ids("passwd", user)}`, `--regid=${ids("group", group)}`,
    groups.length > 0 ? `--groups=${groups.join(",")}` : "--clear-groups",
    `--bounding-set=${["-all", ...caps("CapabilityBoundingSet")].join(",")}`,
    "--inh-caps=-all",
    `--ambient-caps=${["-all", ...caps("AmbientCapabilities")].join(",")}`,
    ...(yes(scalar(unit, "NoNewPrivileges")) ? ["--no-new-privs"] : []),
  ];
}

/** The shell run inside the new mount namespace, as root, before it execs setpriv. */
function mountScript(unit: Unit, opts: SandboxOptions): string[] {
  const to = (p: string): string => opts.paths[p] ?? p;
  const sh: string[] = ["set -eu", "mount --make-rprivate /"];
  // A private stage, so the originals of /tmp and /dev stay reachable while they are replaced.
  sh.push("mount -t tmpfs -o mode=0700 plexd-stage /mnt", "mkdir /mnt/tmp /mnt/dev", "mount --rbind /tmp /mnt/tmp", "mount --rbind /dev /mnt/dev");
  if (yes(scalar(unit, "PrivateTmp"))) {
    sh.push("mount -t tmpfs -o mode=1777,nosuid,nodev private-tmp /tmp", "mount -t tmpfs -o mode=1777,nosuid,nodev private-tmp /var/tmp");
    for (const k of opts.keepInTmp) {
      if (!k.startsWith("/tmp/")) throw new Error(`keepInTmp: ${k} is not under /tmp`);
      sh.push(`mkdir -p ${q(k)}`, `mount --rbind ${q(`/mnt${k}`)} ${q(k)}`);
    }
  }
  // PrivateDevices= and DevicePolicy=closed: only the pseudo devices (plus DeviceAllow= nodes).
  if (yes(scalar(unit, "PrivateDevices")) || scalar(unit, "DevicePolicy") === "closed") {
    const allowed = list(unit, "DeviceAllow").filter((d) => d.startsWith("/dev/"));
    if (yes(scalar(unit, "PrivateDevices")) && allowed.length > 0) throw new Error("DeviceAllow= with PrivateDevices=: not mapped");
    sh.push("mount -t tmpfs -o mode=0755,nosuid private-dev /dev");
    for (const d of ["null", "zero", "full", "random", "urandom", "tty", ...allowed.map((a) => a.slice("/dev/".length))]) {
      sh.push(`mkdir -p "$(dirname /dev/${d})"`, `touch /dev/${d}`, `mount --bind /mnt/dev/${d} /dev/${d}`);
    }
    sh.push("mkdir /dev/shm /dev/pts", "mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm", "ln -s /proc/self/fd /dev/fd");
    for (const [i, n] of ["stdin", "stdout", "stderr"].entries()) sh.push(`ln -s /proc/self/fd/${i} /dev/${n}`);
  }
  sh.push("umount -l /mnt");
  // ProtectProc= / ProcSubset=: a /proc of our own with those mount options.
  const hidepid = scalar(unit, "ProtectProc") ?? "default";
  const subset = scalar(unit, "ProcSubset") ?? "all";
  if (hidepid !== "default" || subset !== "all") {
    sh.push(`mount -t proc -o nosuid,nodev,noexec${hidepid !== "default" ? `,hidepid=${hidepid}` : ""}${subset === "pid" ? ",subset=pid" : ""} proc /proc`);
  }
  // A service under systemd sees the host's cgroup file system (read-only with
  // ProtectControlGroups=, below); `ip netns exec` mounted a fresh /sys without one, so the
  // cgroup v2 hierarchy goes back where a cgroup v2 host has it (crun, for one, needs it there).
  sh.push("if ! mountpoint -q /sys/fs/cgroup; then mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup; fi");
  if (yes(scalar(unit, "ProtectKernelLogs")) && subset !== "pid") sh.push("mount --bind /dev/null /proc/kmsg");
  if (yes(scalar(unit, "ProtectKernelTunables")) && subset !== "pid") sh.push("mount --bind /proc/sys /proc/sys", "mount -o remount,bind,ro /proc/sys");
  // ProtectHome=yes and ProtectKernelModules=yes: empty and inaccessible.
  const hidden = [...(yes(scalar(unit, "ProtectHome")) ? ["/home", "/root", "/run/user"] : []), ...(yes(scalar(unit, "ProtectKernelModules")) ? ["/usr/lib/modules"] : [])];
  for (const h of hidden) sh.push(`if [ -d ${h} ]; then mount -t tmpfs -o ro,mode=000 inaccessible ${h}; fi`);
  // ProtectSystem=strict: every mount read-only but the writable paths; ProtectKernelTunables
  // and ProtectControlGroups make /sys (with /sys/fs/cgroup) read-only as well.
  const writable = [
    ...list(unit, "ReadWritePaths").map((p) => ({ path: to(p.replace(/^-/, "")), optional: p.startsWith("-") })),
    ...list(unit, "RuntimeDirectory").map((d) => ({ path: to(`/run/${d}`), create: true })),
    ...list(unit, "StateDirectory").map((d) => ({ path: to(`/var/lib/${d}`), create: true })),
  ];
  // The private /tmp and /var/tmp stay writable, as systemd leaves them.
  const rw = [...new Set([...writable.map((w) => w.path), ...(yes(scalar(unit, "PrivateTmp")) ? ["/tmp", "/var/tmp"] : [])])];
  for (const w of writable) {
    // systemd creates its Runtime/State directories; ReadWritePaths= must exist unless "-".
    if ("create" in w) sh.push(`mkdir -p ${q(w.path)}`);
    sh.push(`${"optional" in w && w.optional ? `[ ! -e ${q(w.path)} ] || ` : ""}mount --bind ${q(w.path)} ${q(w.path)}`);
  }
  const strict = scalar(unit, "ProtectSystem") === "strict";
  const roSys = yes(scalar(unit, "ProtectKernelTunables")) || yes(scalar(unit, "ProtectControlGroups"));
  if (strict || roSys) {
    const keep = rw.map((p) => `${q(p)}) ;;`).join(" ");
    const skipApi = strict ? "" : "*) continue ;;";
    sh.push(
      `awk '{ for (i = 7; $i != "-"; i++); print $5, $(i + 1) }' /proc/self/mountinfo | sort -u | while read -r m fs; do`,
      `  case "$fs" in proc|nsfs|devpts|mqueue|bpf|tracefs|debugfs|securityfs|pstore|fusectl|configfs|binfmt_misc|hugetlbfs) continue ;; esac`,
      `  case "$m" in ${keep} /dev|/dev/*) ;; /proc|/proc/*) ;; /sys|/sys/*) ${roSys ? `mount -o remount,bind,ro "$m"` : ":"} ;; ${skipApi} *) mount -o remount,bind,ro "$m" ;; esac`,
      "done",
    );
  }
  const umask = scalar(unit, "UMask");
  if (umask) sh.push(`umask ${umask}`);
  const nofile = scalar(unit, "LimitNOFILE");
  // Above the hard limit only with CAP_SYS_RESOURCE, which some test machines' root lacks:
  // then the hard limit is as close as it gets.
  if (nofile) sh.push(`ulimit -n ${nofile} 2>/dev/null || ulimit -n "$(ulimit -H -n)"`);
  return sh;
}

/** The wrapper for `unitFile`: `wrap(argv)` is an argv to run as root in the target namespace. */
export function sandboxFromUnit(unitFile: string, opts: SandboxOptions): (argv: readonly string[]) => string[] {
  const unit = readUnit(unitFile);
  checkKnown(unit);
  // Installed last, after setpriv, as systemd does: setpriv itself needs calls the filter refuses.
  const launcher = seccompLauncher(unit, unitFile.split("/").at(-1)!.replace(/\.service$/, ""));
  const script = [...mountScript(unit, { ...opts, keepInTmp: [...opts.keepInTmp, dirname(launcher)] }), `exec ${setprivArgs(unit).map(q).join(" ")} -- ${q(launcher)} "$@"`].join("\n");
  const ns = ["--mount", ...(yes(scalar(unit, "ProtectHostname")) ? ["--uts"] : []), ...(yes(scalar(unit, "PrivateIPC")) ? ["--ipc"] : [])];
  if (!yes(scalar(unit, "PrivateMounts")) && !scalar(unit, "ProtectSystem")) throw new Error("unit-sandbox: every mapped unit needs a mount namespace");
  return (argv) => ["unshare", ...ns, "--propagation", "private", "--", "sh", "-c", script, "unit-sandbox", ...argv];
}
