// A unit's seccomp directives, rebuilt as a tiny C launcher (raw seccomp BPF, no libseccomp):
// it installs the filter and execs the program, as systemd does just before ExecStart. The
// system-call groups are expanded by systemd-analyze itself, so the lists are systemd's own.
// Mapped: SystemCallFilter (allow list, then "~" removals), SystemCallErrorNumber,
// SystemCallArchitectures=native, RestrictAddressFamilies (allow list), RestrictNamespaces (yes or
// a list of allowed types, as systemd builds it), LockPersonality=yes, MemoryDenyWriteExecute=yes. x86_64 and aarch64 only (AUDIT_ARCH of the build machine).
import { execFileSync } from "node:child_process";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempDir } from "../harness/index.js";
import { list, scalar, yes, type Unit } from "../../support/systemd-unit.js";

/** Directives the launcher enforces. */
export const seccompApplied = ["SystemCallFilter", "SystemCallErrorNumber", "SystemCallArchitectures", "RestrictAddressFamilies", "RestrictNamespaces", "LockPersonality", "MemoryDenyWriteExecute"] as const;

const groups = new Map<string, string[]>();

/** Every system call name in `@group`, nested groups expanded (systemd-analyze syscall-filter). */
function expand(group: string): string[] {
  const known = groups.get(group);
  if (known) return known;
  const out = new Set<string>();
  for (const line of execFileSync("systemd-analyze", ["syscall-filter", group], { encoding: "utf8" }).split("\n").slice(1)) {
    const t = line.trim();
    if (t === "" || t.startsWith("#")) continue;
    for (const n of t.startsWith("@") ? expand(t) : [t]) out.add(n);
  }
  groups.set(group, [...out]);
  return [...out];
}

const names = (items: readonly string[]): string[] => items.flatMap((i) => (i.startsWith("@") ? expand(i) : [i]));

/** The allowed system calls: the first allow-list assignment, minus every "~" one after it. */
export function allowedSyscalls(unit: Unit): Set<string> {
  const values = unit.get("Service")?.get("SystemCallFilter") ?? [];
  if (values.length === 0 || values[0]!.startsWith("~")) throw new Error("unit-seccomp: SystemCallFilter must start with an allow list");
  const allowed = new Set<string>();
  for (const v of values) {
    if (v.startsWith("~")) for (const n of names(v.slice(1).trim().split(/\s+/))) allowed.delete(n);
    else for (const n of names(v.split(/\s+/))) allowed.add(n);
  }
  return allowed;
}

const families: Record<string, string> = { AF_UNIX: "AF_UNIX", AF_INET: "AF_INET", AF_INET6: "AF_INET6", AF_NETLINK: "AF_NETLINK", AF_PACKET: "AF_PACKET" };

const nsFlags: Record<string, string> = { cgroup: "CLONE_NEWCGROUP", ipc: "CLONE_NEWIPC", net: "CLONE_NEWNET", mnt: "CLONE_NEWNS", pid: "CLONE_NEWPID", user: "CLONE_NEWUSER", uts: "CLONE_NEWUTS" };

/** The C expression of the namespace flags RestrictNamespaces= refuses, or undefined when it refuses none. */
export function deniedNamespaces(value: readonly string[]): string | undefined {
  if (value.length === 0 || (value.length === 1 && ["no", "false", "off", "0"].includes(value[0]!))) return undefined;
  if (value.length === 1 && yes(value[0])) return "NS_FLAGS";
  if (value.some((v) => v.startsWith("~"))) throw new Error(`unit-seccomp: RestrictNamespaces=${value.join(" ")} not mapped (yes or an allow list)`);
  for (const v of value) if (!nsFlags[v]) throw new Error(`unit-seccomp: namespace type ${v} not mapped`);
  return `(NS_FLAGS & ~(${value.map((v) => nsFlags[v]).join("|")}))`;
}

function cSource(unit: Unit): string {
  const allowed = allowedSyscalls(unit);
  const errno = scalar(unit, "SystemCallErrorNumber") ?? "EPERM";
  if (!/^E[A-Z0-9]+$/.test(errno)) throw new Error(`unit-seccomp: SystemCallErrorNumber=${errno} not mapped`);
  if ((scalar(unit, "SystemCallArchitectures") ?? "native") !== "native") throw new Error("unit-seccomp: only SystemCallArchitectures=native is mapped");
  const fams = list(unit, "RestrictAddressFamilies").map((f) => {
    if (!families[f]) throw new Error(`unit-seccomp: address family ${f} not mapped`);
    return families[f];
  });
  const denied = deniedNamespaces(list(unit, "RestrictNamespaces"));
  const ok = (n: string) => (allowed.has(n) ? "ALLOWED" : "REFUSED");
  const special: string[] = [];
  // Each block starts with "nr == X ?" and ends in a return; A still holds nr after a skipped block.
  const block = (nr: string, body: string[]) => special.push(`#ifdef __NR_${nr}`, `  BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, __NR_${nr}, 0, ${body.length}),`, ...body.map((b) => `  ${b},`), "#endif");
  if (fams.length > 0) block("socket", ["ARG0", ...fams.flatMap((f) => [`BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, ${f}, 0, 1)`, ok("socket")]), "RET_ERRNO(EAFNOSUPPORT)"]);
  if (denied !== undefined) {
    for (const call of ["unshare", "clone"]) block(call, ["ARG0", `BPF_STMT(BPF_ALU|BPF_AND|BPF_K, ${denied})`, "BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, 0, 0, 1)", ok(call), "REFUSED"]);
    // setns(fd, nstype): with no type allowed, never; else only when nstype names no refused type.
    block("setns", denied === "NS_FLAGS" ? ["REFUSED"] : ["ARG(1)", `BPF_STMT(BPF_ALU|BPF_AND|BPF_K, ${denied})`, "BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, 0, 0, 1)", ok("setns"), "REFUSED"]);
    // As systemd does: clone3's flags live in memory seccomp cannot read, so glibc is told to use clone.
    block("clone3", ["RET_ERRNO(ENOSYS)"]);
  }
  if (yes(scalar(unit, "LockPersonality"))) {
    block("personality", ["ARG0", "BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, 0, 2, 0)", "BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, 0xffffffff, 1, 0)", "REFUSED", ok("personality")]);
  }
  if (yes(scalar(unit, "MemoryDenyWriteExecute"))) {
    // No mapping both writable and executable, and no page made executable later.
    block("mmap", ["ARG(2)", "BPF_STMT(BPF_ALU|BPF_AND|BPF_K, PROT_WRITE|PROT_EXEC)", "BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, PROT_WRITE|PROT_EXEC, 0, 1)", "REFUSED", ok("mmap")]);
    for (const call of ["mprotect", "pkey_mprotect"]) block(call, ["ARG(2)", "BPF_STMT(BPF_ALU|BPF_AND|BPF_K, PROT_EXEC)", "BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, 0, 0, 1)", ok(call), "REFUSED"]);
  }
  const generic = [...allowed].sort().flatMap((n) => [`#ifdef __NR_${n}`, `  ALLOW(__NR_${n}),`, "#endif"]);
  return `// Generated by test/e2e/lib/unit-seccomp.ts.
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#if defined(__x86_64__)
#define NATIVE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE AUDIT_ARCH_AARCH64
#endif
#define NS_FLAGS (CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET|CLONE_NEWCGROUP)
#define RET_ERRNO(e) BPF_STMT(BPF_RET|BPF_K, SECCOMP_RET_ERRNO|((e) & SECCOMP_RET_DATA))
#define ALLOWED BPF_STMT(BPF_RET|BPF_K, SECCOMP_RET_ALLOW)
#define REFUSED RET_ERRNO(${errno})
#define ARG(i) BPF_STMT(BPF_LD|BPF_W|BPF_ABS, offsetof(struct seccomp_data, args[i]))
#define ARG0 ARG(0)
#define ALLOW(n) BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, (n), 0, 1), ALLOWED
int main(int argc, char **argv) {
  struct sock_filter f[] = {
  BPF_STMT(BPF_LD|BPF_W|BPF_ABS, offsetof(struct seccomp_data, arch)),
  BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, NATIVE, 1, 0),
  REFUSED,
  BPF_STMT(BPF_LD|BPF_W|BPF_ABS, offsetof(struct seccomp_data, nr)),
  BPF_JUMP(BPF_JMP|BPF_JGE|BPF_K, 0x40000000, 0, 1),
  REFUSED,
${special.join("\n")}
${generic.join("\n")}
  REFUSED,
  };
  struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
  if (argc < 2) { fprintf(stderr, "usage: %s PROGRAM [ARG...]\\n", argv[0]); return 125; }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) { perror("seccomp"); return 125; }
  execvp(argv[1], argv + 1);
  perror(argv[1]);
  return 127;
}
`;
}

/** Compiles the launcher for `unit` (with the system's cc) into a world-readable temp dir. */
export function seccompLauncher(unit: Unit, label: string): string {
  const dir = makeTempDir(`seccomp-${label}`, { mode: 0o755 });
  const src = join(dir, "launcher.c");
  const bin = join(dir, "launcher");
  writeFileSync(src, cSource(unit));
  execFileSync("cc", ["-O2", "-Wall", "-Werror", "-o", bin, src], { stdio: ["ignore", "ignore", "pipe"] });
  chmodSync(bin, 0o755);
  return bin;
}
