// The container manifests (deploy/docker-compose.yml, deploy/kubernetes/daemonset.yaml) give
// privhelper root with only NET_ADMIN and NET_RAW, group plexd, no supplementary groups and no
// new privileges, and the agent none at all. No container engine runs here, so this starts
// two nodes' privhelpers under exactly those restrictions (setpriv: bounding set, cleared
// inheritable set and groups, no_new_privs), each beside its agent, with the containers'
// plexd settings, and checks that they form a mesh with mockcp that carries traffic.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { bundleArgv } from "./lib/bundle-argv.js";
import { createTopology, ensureSystemUsers, ping, spawnInNamespace, useHarness, wgShow, type SystemUsers, type Topology, until } from "./harness/vitest.js";
import { cpPort, startCpOnHub, stunPort } from "./lib/cp.js";
import { meshIp } from "./lib/mesh.js";
import { createNode, distDir, type PlexdNode } from "./lib/node.js";

useHarness();

const deploy = join(import.meta.dirname, "../../deploy");

/** privhelper's added capabilities, as the compose file and the DaemonSet grant them (they must agree). */
function manifestCapabilities(): string[] {
  const compose = parse(readFileSync(join(deploy, "docker-compose.yml"), "utf8"), { merge: true }) as { services: Record<string, { cap_add?: string[]; cap_drop?: string[] }> };
  const fromCompose = compose.services["node1-privhelper"];
  expect(fromCompose?.cap_drop).toEqual(["ALL"]);
  const ds = parseAllDocuments(readFileSync(join(deploy, "kubernetes", "daemonset.yaml"), "utf8"))[0]?.toJS() as {
    spec: { template: { spec: { containers: { name: string; securityContext: { capabilities: { add: string[]; drop: string[] } } }[] } } };
  };
  const fromK8s = ds.spec.template.spec.containers.find((c) => c.name === "privhelper")?.securityContext.capabilities;
  expect(fromK8s?.drop).toEqual(["ALL"]);
  expect([...(fromK8s?.add ?? [])].sort()).toEqual([...(fromCompose?.cap_add ?? [])].sort());
  return [...(fromCompose?.cap_add ?? [])].sort();
}

/** The plexd settings the container configs change for life in a container (no sshd, journald, auditd). */
function containerSettings(): Record<string, unknown> {
  const c = parse(readFileSync(join(deploy, "compose", "node-1.yaml"), "utf8")) as Record<string, unknown>;
  return { access: c.access, logs: c.logs, audit: c.audit };
}

const capBits: Record<string, number> = { NET_ADMIN: 12, NET_RAW: 13 };

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let caps: string[];
const nodes: PlexdNode[] = [];

async function startRestrictedPrivhelper(n: PlexdNode): Promise<number> {
  const p = spawnInNamespace({
    ns: n.ns,
    name: `${n.name}-privhelper-restricted`,
    user: { uid: 0, gid: users.groups.plexd },
    argv: ["setpriv", `--bounding-set=-all,${caps.map((c) => `+${c.toLowerCase()}`).join(",")}`, "--inh-caps=-all", "--no-new-privs", "--", ...bundleArgv(distDir, "plexd-privhelper"), "--config", n.configFile],
  });
  n.privhelper = p;
  await p.waitForLine(/listening/, 15_000);
  return p.pid;
}

beforeAll(async () => {
  caps = manifestCapabilities();
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["a", "b"] });
  cp = await startCpOnHub(topo, { stun: true });
  for (const name of ["a", "b"]) {
    const { token } = await cp.client.createToken();
    const n = createNode({
      name,
      ns: topo.node(name).ns,
      api: `https://${topo.hub.ip}:${cpPort}`,
      caFile: cp.caFile,
      users,
      token,
      config: {
        ...containerSettings(),
        policy: { default: "allow" },
        heartbeat: { interval: "5s" },
        reconcile: { interval: "10s" },
        nat_traversal: { enabled: true, stun_servers: [`${topo.hub.ip}:${stunPort}`], refresh_interval: "10s", timeout: "2s" },
      },
    });
    nodes.push(n);
  }
});

describe("privhelper with only the capabilities the container manifests grant", () => {
  it("holds exactly those capabilities, and the two nodes still form a mesh that carries traffic", async () => {
    expect(caps).toEqual(["NET_ADMIN", "NET_RAW"]);
    const want = caps.reduce((m, c) => m | (1n << BigInt(capBits[c] ?? 63)), 0n);
    for (const n of nodes) {
      const pid = await startRestrictedPrivhelper(n);
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      expect(BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(status)?.[1] ?? "ff"}`), `${n.name} CapEff`).toBe(want);
      expect(BigInt(`0x${/^CapBnd:\s+([0-9a-f]+)/m.exec(status)?.[1] ?? "ff"}`), `${n.name} CapBnd`).toBe(want);
      expect(/^NoNewPrivs:\s+1$/m.test(status)).toBe(true);
      expect(/^Groups:\s*$/m.test(status), `${n.name} has no supplementary groups`).toBe(true);
      n.startAgent();
      await n.agent!.waitForLine(/"msg":"registered"|identity loaded/, 30_000);
    }
    const [a, b] = nodes as [PlexdNode, PlexdNode];
    await until("each node has its peer", async () => (await Promise.all(nodes.map(async (n) => (await wgShow(n.ns, n.iface).catch(() => ({ peers: [] }))).peers.length))).every((c) => c === 1), 60_000);
    await until("a and b ping each other over the mesh", async () => (await ping(a.ns, meshIp(b), { count: 2, timeoutMs: 8000 })).ok && (await ping(b.ns, meshIp(a), { count: 2, timeoutMs: 8000 })).ok, 60_000);
    // Nothing privhelper did was refused for want of a privilege.
    for (const n of nodes) expect(n.privhelper!.output()).not.toMatch(/EPERM|EACCES|[Oo]peration not permitted|[Pp]ermission denied/);
  });
});
