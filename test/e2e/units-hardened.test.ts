import { readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { unitFiles, list, readUnit, scalar } from "../support/systemd-unit.js";
import { createTopology, ensureSystemUsers, makeTempDir, nsExec, ping, run, spawnInNamespace, until, useHarness, wgShow, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { joinNode, meshIp, nodeId } from "./lib/mesh.js";
import { installedExecutables, type Executables, type LaunchWrap, type PlexdNode } from "./lib/node.js";
import { buildRelease } from "./lib/release.js";
import { applied, sandboxFromUnit, staticOnly } from "./lib/unit-sandbox.js";
import { seccompLauncher } from "./lib/unit-seccomp.js";

// The hardened units still run plexd: without systemd as PID 1, both processes of two nodes
// start inside the restrictions their shipped unit files state (user, groups, capability
// sets, no-new-privs, read-only system, private /tmp and /dev, /proc options, umask, ...,
// generated from the files by lib/unit-sandbox.ts), join the control plane, and ping each
// other across the mesh. Then the restrictions are read back from the running processes.
// They run the release artifact installed into a tree under /tmp, as a host would: the
// checkout itself may sit where the units hide (/root, /home, /tmp), wherever CI clones it.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let installed: string;
let executables: Executables;
let hooksDir: string;
const nodes: PlexdNode[] = [];

const wrap: LaunchWrap = (role, argv, node) =>
  sandboxFromUnit(unitFiles[role], {
    paths:
      role === "agent"
        ? { "/var/lib/plexd": node.dataDir, "/run/plexd": dirname(node.apiSocket) }
        : { "/run/plexd-priv": dirname(node.privSocket), "/etc/plexd": dirname(node.tokenFile) },
    // The test's stand-ins for /etc/plexd, /var/lib/plexd and the CA live under /tmp.
    keepInTmp: [node.root, dirname(cp.caFile), installed, hooksDir],
  })(argv);

beforeAll(async () => {
  users = await ensureSystemUsers();
  const release = await buildRelease();
  installed = makeTempDir("installed", { mode: 0o755 });
  await run([join(release.unpacked, "bin/plexd"), "install", "--root", installed, "--api-url", "https://cp.invalid:8443", "--no-start"]);
  executables = installedExecutables(installed);
  // A hook for the namespaced sandbox, run by privhelper from inside its unit's restrictions.
  hooksDir = makeTempDir("hardened-hooks", { mode: 0o755 });
  const probe = join(hooksDir, "probe.sh");
  writeFileSync(probe, `#!/bin/sh\n${hookProbe}\n`, { mode: 0o755 });
  const hooks = {
    dir: hooksDir,
    definitions: [
      { name: "probe", path: probe, sandbox: "namespaced", sandbox_options: { writable_paths: ["/tmp"] } },
      { name: "boxed", path: probe, sandbox: "container", sandbox_options: { writable_paths: ["/tmp"] } },
    ],
  };
  topo = await createTopology({ nodes: ["a", "b"] });
  cp = await startCpOnHub(topo, { stun: true });
  const api = `https://${topo.hub.ip}:${cpPort}`;
  for (const name of ["a", "b"]) nodes.push(await joinNode({ topo, cp, api, users, name, wrap, executables, config: { policy: { default: "allow" }, hooks } }));
}, 240_000);

const hookProbe = [
  'echo "uid=$(id -u)"',
  "echo \"links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')\"",
  "echo \"pids=$(ls /proc | grep -c '^[0-9]')\"",
  'echo "pid1=$(cat /proc/1/comm)"',
  "touch /etc/plexd-hook-escape 2>/dev/null && echo etc=written || echo etc=refused",
  'echo hook-was-here > "/tmp/probe-$PLEXD_EXECUTION_ID" && echo tmp=written || echo tmp=refused',
  "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status",
].join("\n");

function status(pid: number): Record<string, string> {
  return Object.fromEntries(readFileSync(`/proc/${pid}/status`, "utf8").split("\n").filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]));
}

// Capability numbers of linux/capability.h, for the ones a unit may name.
const capNumbers: Record<string, number> = { CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_DAC_READ_SEARCH: 2, CAP_FOWNER: 3, CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7, CAP_SETPCAP: 8, CAP_NET_BIND_SERVICE: 10, CAP_NET_ADMIN: 12, CAP_NET_RAW: 13, CAP_SYS_ADMIN: 21, CAP_AUDIT_READ: 37 };

/** The capability mask of a unit's CapabilityBoundingSet=, as /proc/<pid>/status prints it. */
function capMask(unit: string): string {
  let mask = 0n;
  for (const c of list(readUnit(unit), "CapabilityBoundingSet")) {
    const num = capNumbers[c];
    if (num === undefined) throw new Error(`no number for ${c}: add it to capNumbers`);
    mask |= 1n << BigInt(num);
  }
  return mask.toString(16).padStart(16, "0");
}

/** Runs `sh -c script` as root inside the process's mount namespace. */
const inMountNs = (pid: number, script: string) => run(["nsenter", "-t", String(pid), "-m", "--", "sh", "-c", script], { reject: false });

describe("hardened units without systemd", () => {
  it("two nodes in their units' sandboxes form a mesh and ping each other", async () => {
    const [a, b] = nodes as [PlexdNode, PlexdNode];
    for (const n of nodes) await until(`${n.name} has its peer`, async () => (await wgShow(n.ns, n.iface).catch(() => ({ peers: [] }))).peers.length === 1, 60_000);
    await until("a pings b", async () => (await ping(a.ns, meshIp(b), { count: 2, timeoutMs: 8000 })).ok, 60_000);
    await until("b pings a", async () => (await ping(b.ns, meshIp(a), { count: 2, timeoutMs: 8000 })).ok, 60_000);
    console.log(`unit directives applied at run time: ${applied.join(" ")}`);
    console.log(`unit directives checked only statically: ${staticOnly.join(" ")}`);
  });

  it("a hook runs in the namespaced sandbox from inside privhelper's unit: its mount and PID namespaces are allowed, no other", async () => {
    const n = nodes[0]!;
    const id = nodeId(n);
    const { execution_id } = await cp.client.pushAction(id, { action: "hooks/probe" });
    const rec = await cp.client.waitForResult(id, execution_id, { timeoutMs: 60_000 });
    const result = rec.result!.body as { status: string; stdout: string; stderr: string };
    expect(result.status, result.stderr).toBe("success");
    const out = result.stdout;
    expect(out).toContain("uid=65534");
    expect(out).toContain("pid1=bwrap");
    expect(Number(/pids=(\d+)/.exec(out)?.[1])).toBeLessThan(10);
    expect(out).toContain("etc=refused");
    expect(out).toContain("tmp=written");
    // No capability, no new privileges, and privhelper's seccomp filter (inherited) still on.
    expect(out).toMatch(/CapEff:\s+0000000000000000/);
    expect(out).toMatch(/CapBnd:\s+0000000000000000/);
    expect(out).toMatch(/NoNewPrivs:\s+1/);
    expect(out).toMatch(/Seccomp:\s+2/);
    // Its writable /tmp is privhelper's private one (PrivateTmp=), not the host's.
    expect((await inMountNs(n.privhelper!.pid, `cat /tmp/probe-${execution_id}`)).stdout.trim()).toBe("hook-was-here");
    expect((await run(["test", "-e", `/tmp/probe-${execution_id}`], { reject: false })).exitCode).not.toBe(0);
    // The filter allows exactly the sandboxes' namespaces (mount, PID, and network for a
    // container without network): a user, UTS, IPC or cgroup namespace is refused, and under
    // the former RestrictNamespaces=yes bubblewrap itself could not start.
    const priv = readUnit(unitFiles.privhelper);
    const launcher = seccompLauncher(priv, "probe-priv");
    expect((await run([launcher, "unshare", "--mount", "--pid", "--net", "--fork", "true"], { reject: false })).exitCode).toBe(0);
    for (const ns of ["--user", "--uts", "--ipc", "--cgroup"]) expect((await run([launcher, "unshare", ns, "true"], { reject: false })).stderr, ns).toMatch(/Operation not permitted/);
    priv.get("Service")!.set("RestrictNamespaces", ["yes"]);
    const before = await run([seccompLauncher(priv, "probe-priv-old"), "bwrap", "--ro-bind", "/", "/", "--unshare-pid", "true"], { reject: false });
    expect(before.stderr).toMatch(/Operation not permitted/);
  });

  it("a container hook (crun) runs from inside privhelper's unit too: as nobody, no network but loopback, no capability", async () => {
    const n = nodes[0]!;
    const id = nodeId(n);
    const { execution_id } = await cp.client.pushAction(id, { action: "hooks/boxed" });
    const rec = await cp.client.waitForResult(id, execution_id, { timeoutMs: 60_000 });
    const result = rec.result!.body as { status: string; stdout: string; stderr: string };
    expect(result.status, result.stderr).toBe("success");
    const out = result.stdout;
    expect(out).toContain("uid=65534");
    expect(out).toMatch(/^links=lo $/m);
    expect(out).toContain("etc=refused");
    expect(out).toContain("tmp=written");
    expect(out).toMatch(/CapEff:\s+0000000000000000/);
    expect(out).toMatch(/CapBnd:\s+0000000000000000/);
    expect(out).toMatch(/NoNewPrivs:\s+1/);
    expect(out).toMatch(/Seccomp:\s+2/);
  });

  it("the agent runs as the unit says: plexd, no capability, no new privileges, umask 0077, read-only system", async () => {
    const n = nodes[0]!;
    const unit = readUnit(unitFiles.agent);
    const st = status(n.agent!.pid);
    expect(st.Uid!.split(/\s+/)).toEqual(Array(4).fill(String(users.plexd.uid)));
    expect(st.Gid!.split(/\s+/)[0]).toBe(String(users.groups.plexd));
    const groups = st.Groups!.split(/\s+/).filter(Boolean).map(Number);
    for (const g of list(unit, "SupplementaryGroups")) expect(groups).toContain(Number((await run(["getent", "group", g])).stdout.split(":")[2]));
    expect([st.CapBnd, st.CapEff, st.CapPrm, st.CapAmb, st.NoNewPrivs, st.Umask]).toEqual(["0000000000000000", "0000000000000000", "0000000000000000", "0000000000000000", "1", scalar(unit, "UMask")]);
    expect(readlinkSync(`/proc/${n.agent!.pid}/ns/mnt`)).not.toBe(readlinkSync("/proc/self/ns/mnt"));
    expect(readlinkSync(`/proc/${n.agent!.pid}/ns/uts`)).not.toBe(readlinkSync("/proc/self/ns/uts"));
    // Read-only outside ReadWritePaths= (root is refused too: it is the mount, not the mode).
    expect((await inMountNs(n.agent!.pid, "touch /usr/.plexd-probe")).stderr).toMatch(/Read-only file system/);
    expect((await inMountNs(n.agent!.pid, `touch ${n.configFile}`)).stderr).toMatch(/Read-only file system/);
    expect((await inMountNs(n.agent!.pid, `touch ${n.dataDir}/.probe && rm ${n.dataDir}/.probe`)).exitCode).toBe(0);
    // PrivateTmp=: the host's /tmp is not the agent's; PrivateDevices=: no kmsg, no disks.
    const marker = join(makeTempDir("sandbox-marker"), "visible");
    writeFileSync(marker, "x");
    expect((await inMountNs(n.agent!.pid, `test -e ${marker}`)).exitCode).not.toBe(0);
    expect((await inMountNs(n.agent!.pid, "ls /dev")).stdout.split(/\s+/).sort()).toEqual(["fd", "full", "null", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]);
    // ProcSubset=pid: no /proc/sys; ProtectHome=: /root is empty and closed.
    expect((await inMountNs(n.agent!.pid, "test -e /proc/sys/kernel")).exitCode).not.toBe(0);
    expect((await inMountNs(n.agent!.pid, "stat -c %a /root")).stdout.trim()).toBe("0");
  });

  it("privhelper runs as the unit says: root, its capability set alone, /dev/net/tun its only device", async () => {
    const n = nodes[0]!;
    const unit = readUnit(unitFiles.privhelper);
    const st = status(n.privhelper!.pid);
    expect(st.Uid!.split(/\s+/)).toEqual(["0", "0", "0", "0"]);
    expect(st.Gid!.split(/\s+/)[0]).toBe(String(users.groups.plexd));
    const mask = capMask(unitFiles.privhelper);
    expect([st.CapBnd, st.CapEff, st.NoNewPrivs, st.Umask]).toEqual([mask, mask, "1", scalar(unit, "UMask")]);
    expect((await inMountNs(n.privhelper!.pid, "ls /dev/net")).stdout.trim()).toBe("tun");
    expect((await inMountNs(n.privhelper!.pid, "test -e /dev/kmsg")).exitCode).not.toBe(0);
    expect((await inMountNs(n.privhelper!.pid, "touch /usr/.plexd-probe")).stderr).toMatch(/Read-only file system/);
    // ProtectProc=invisible: its /proc hides another user's process (the agent) from a process
    // like privhelper (group plexd, no CAP_SYS_PTRACE; members of group root would see all).
    // No ProcSubset=pid: bubblewrap needs /proc/sys (read-only here, ProtectKernelTunables=).
    expect(readFileSync(`/proc/${n.privhelper!.pid}/mountinfo`, "utf8")).toMatch(/ \/proc .* - proc proc \S*hidepid=invisible/);
    expect((await inMountNs(n.privhelper!.pid, "touch /proc/sys/kernel/overflowuid")).stderr).toMatch(/Read-only file system|Permission denied/);
    expect((await inMountNs(n.privhelper!.pid, `setpriv --regid=${users.groups.plexd} --clear-groups --bounding-set=-all -- test -d /proc/${n.agent!.pid}`)).exitCode).toBe(1);
    expect((await inMountNs(n.privhelper!.pid, `test -d /proc/${n.privhelper!.pid}`)).exitCode).toBe(0);
    // wireguard-go, started by privhelper inside the sandbox, serves the mesh from it.
    const wgGo = (await nsExec(n.ns, ["pgrep", "-f", `wireguard-go -f ${n.iface}`])).stdout.trim().split("\n")[0];
    expect(readlinkSync(`/proc/${wgGo}/ns/mnt`)).toBe(readlinkSync(`/proc/${n.privhelper!.pid}/ns/mnt`));
  });

  it("both run under their unit's seccomp filter, which refuses what the unit forbids", async () => {
    const n = nodes[0]!;
    const wgGo = Number((await nsExec(n.ns, ["pgrep", "-f", `wireguard-go -f ${n.iface}`])).stdout.trim().split("\n")[0]);
    for (const pid of [n.agent!.pid, n.privhelper!.pid, wgGo]) expect(status(pid).Seccomp, `pid ${pid}`).toBe("2");
    // The same launcher the processes were started through, probed directly (as root).
    const agent = seccompLauncher(readUnit(unitFiles.agent), "probe-agent");
    const probe = (argv: string[]) => run([agent, ...argv], { reject: false });
    expect((await probe(["true"])).exitCode).toBe(0);
    // SystemCallFilter=~@privileged: no identity change, even for root.
    expect((await probe(["setpriv", "--reuid=65534", "true"])).stderr).toMatch(/Operation not permitted/);
    // RestrictNamespaces=yes.
    expect((await probe(["unshare", "--mount", "true"])).stderr).toMatch(/Operation not permitted/);
    // RestrictAddressFamilies=: no packet sockets.
    expect((await probe(["/usr/bin/python3", "-c", "import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)"])).stderr).toMatch(/Address family not supported/);
    // LockPersonality=yes.
    expect((await probe(["setarch", "--addr-no-randomize", "true"])).stderr).toMatch(/Operation not permitted|failed to set personality/);
  });

  it("MemoryDenyWriteExecute stays off because node cannot run under it", async () => {
    // The agent's unit with that one directive turned on: V8's compiler aborts node at start.
    const unit = readUnit(unitFiles.agent);
    unit.get("Service")!.set("MemoryDenyWriteExecute", ["yes"]);
    const r = await run([seccompLauncher(unit, "probe-mdwe"), process.execPath, "-e", "for (let i = 0; i < 1e5; i++) JSON.stringify({ i })"], { reject: false });
    expect(r.signal ?? r.exitCode, r.stderr).toBe("SIGTRAP");
    expect(r.stderr).toMatch(/SetPermissions/);
    expect(scalar(readUnit(unitFiles.agent), "MemoryDenyWriteExecute")).toBe("no");
    expect(scalar(readUnit(unitFiles.privhelper), "MemoryDenyWriteExecute")).toBe("no");
  });

  it("wireguard-go outlives a privhelper restart, and the new privhelper in its sandbox serves the agent", async () => {
    const [a, b] = nodes as [PlexdNode, PlexdNode];
    const wgGoPids = async () => (await nsExec(a.ns, ["pgrep", "-f", `wireguard-go -f ${a.iface}`], { reject: false })).stdout.trim().split("\n").filter(Boolean);
    const before = await wgGoPids();
    expect(before).toHaveLength(1);
    await a.privhelper!.kill("SIGTERM", { graceMs: 10_000, group: false });
    await a.startPrivhelper();
    await a.agent!.waitForLine(/"msg":"privhelper reconnected"/, 30_000, { since: "now" });
    await until("an RPC of the agent served", async () => new RegExp(`"rpc":"\\w+","uid":${users.plexd.uid},.*"outcome":"ok"`).test(a.privhelper!.output()), 30_000);
    expect(await wgGoPids()).toEqual(before);
    expect((await ping(a.ns, meshIp(b), { count: 2, timeoutMs: 8000 })).ok).toBe(true);
  });

  it("privhelper --cleanup in its sandbox finds and stops the wireguard-go it started (ProtectProc=invisible hides only other users)", async () => {
    const b = nodes[1]!;
    await b.agent!.kill("SIGTERM", { graceMs: 15_000 });
    const wgGoPids = async () => (await nsExec(b.ns, ["pgrep", "-f", `wireguard-go -f ${b.iface}`], { reject: false })).stdout.trim().split("\n").filter(Boolean);
    expect(await wgGoPids()).toHaveLength(1);
    const p = spawnInNamespace({ ns: b.ns, name: "b-cleanup", argv: wrap("privhelper", [executables.privhelper, "--config", b.configFile, "--cleanup"], b) });
    const exit = await p.waitForExit(60_000);
    expect(exit.exitCode, p.output()).toBe(0);
    expect(p.output()).toMatch(/wireguard-go pid \d+/);
    expect(await wgGoPids()).toEqual([]);
    expect((await nsExec(b.ns, ["ip", "link", "show", b.iface], { reject: false })).exitCode).not.toBe(0);
  });
});
