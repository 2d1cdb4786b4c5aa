import { chmodSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { checkNames } from "../../cli/selftest/index.js";
import { verdictExitCodes, type CheckResult, type Verdict } from "../../cli/selftest/verdict.js";
import { createTopology, ensureSystemUsers, nsExec, spawnInNamespace, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { bundleArgv } from "./lib/bundle-argv.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { startDns, testDomain, useTestDns } from "./lib/dns.js";
import { createNode, distDir, type PlexdNode } from "./lib/node.js";

// `plexd self-test` on this machine, in a node namespace laid out as `plexd install` does:
// the control plane is mockcp on the hub, reached by a name the test DNS server answers, over
// TLS with mockcp's CA. Then the same host with /dev/net/tun hidden (and no kernel module to
// fall back on): not ready, exit 2.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let node: PlexdNode;
const cpName = `cp.${testDomain}`;

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["a"] });
  cp = await startCpOnHub(topo, { extraArgs: ["--tls-san", cpName] });
  await startDns(topo, { [cpName]: topo.hub.ip });
  useTestDns(topo, topo.node("a").ns);
  const { token } = await cp.client.createToken();
  node = createNode({ name: "a", ns: topo.node("a").ns, api: `https://${cpName}:${cpPort}`, caFile: cp.caFile, users, token });
});

interface Report {
  verdict: Verdict;
  checks: CheckResult[];
}

/** `plexd self-test --json` as root in the node's namespace, optionally inside `sh -c prelude` of its own mount namespace. */
async function selfTest(prelude?: string): Promise<{ exitCode: number | null; report: Report }> {
  const argv = [...bundleArgv(distDir, "plexd"), "self-test", "--json", "--config", node.configFile];
  const p = spawnInNamespace({
    ns: node.ns,
    name: "self-test",
    argv: prelude === undefined ? argv : ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", `set -e; ${prelude}; exec "$@"`, "sh", ...argv],
  });
  const exit = await p.waitForExit(60_000);
  const line = p.stdout().trim().split("\n").at(-1) ?? "";
  let report: Report;
  try {
    report = JSON.parse(line) as Report;
  } catch {
    throw new Error(`self-test printed no JSON report (exit ${String(exit.exitCode)}):\n${p.output()}`);
  }
  return { exitCode: exit.exitCode, report };
}

const byName = (r: Report): Record<string, CheckResult> => Object.fromEntries(r.checks.map((c) => [c.name, c]));

describe("plexd self-test", () => {
  it("names every check and finds this host's plexd layout and control plane in order", async () => {
    const { exitCode, report } = await selfTest();
    console.log(report.checks.map((c) => `${c.name}: ${c.status} (${c.detail})`).join("\n"));
    expect(report.checks.map((c) => c.name)).toEqual([...checkNames]);
    for (const c of report.checks) {
      expect(["ok", "warn", "fail"]).toContain(c.status);
      expect(c.detail).not.toBe("");
    }
    const checks = byName(report);
    // What the test set up must be seen as set up; cgroup v2 is the host's (and `ip netns exec`
    // mounts a /sys of its own, without the cgroup file system).
    for (const name of ["wireguard", "tun", "nftables", "udp-ports", "cp-dns", "cp-tls", "clock", "accounts", "config-file", "token-file", "data-dir", "sockets"]) {
      expect(checks[name], `${name}: ${checks[name]?.detail}`).toMatchObject({ status: "ok" });
    }
    expect(checks["cp-dns"]!.detail).toContain(topo.hub.ip);
    expect(checks["cp-tls"]!.detail).toMatch(/certificate verified against/);
    const cgroup = (await nsExec(node.ns, ["test", "-e", "/sys/fs/cgroup/cgroup.controllers"], { reject: false })).exitCode === 0;
    expect(checks["cgroup-v2"]!.status).toBe(cgroup ? "ok" : "warn");
    expect(report.verdict).toBe(cgroup ? "ready" : "degraded");
    expect(exitCode).toBe(verdictExitCodes[report.verdict]);
  });

  it("with /dev/net/tun hidden on a host without the WireGuard module: not ready, exit 2", async () => {
    // Empty file systems over /dev/net and the module lists, in a mount namespace of its own.
    const { exitCode, report } = await selfTest("mount -t tmpfs none /dev/net; mount -t tmpfs none /sys/module; if [ -d /usr/lib/modules ]; then mount -t tmpfs none /usr/lib/modules; fi");
    const checks = byName(report);
    expect(checks.tun).toMatchObject({ status: "fail" });
    expect(checks.tun!.detail).toMatch(/\/dev\/net\/tun unusable: ENOENT; wireguard-go needs it/);
    expect(report.verdict).toBe("not_ready");
    expect(exitCode).toBe(2);
  });

  it("a bootstrap token readable by everyone makes the host not ready", async () => {
    chmodSync(node.tokenFile, 0o644);
    try {
      const { exitCode, report } = await selfTest();
      expect(byName(report)["token-file"]).toMatchObject({ status: "fail" });
      expect(byName(report)["token-file"]!.detail).toMatch(/mode 0644 grants more than 0640/);
      expect(exitCode).toBe(2);
    } finally {
      chmodSync(node.tokenFile, 0o640);
    }
  });
});
