import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { createTopology, ensureSystemUsers, makeTempDir, ping, run, useHarness, wgShow, type SystemUsers, type Topology } from "./harness/vitest.js";
import { startCpOnHub, cpPort } from "./lib/cp.js";
import { joinNode, meshIp } from "./lib/mesh.js";
import { installedExecutables, type PlexdNode } from "./lib/node.js";
import { buildRelease } from "./lib/release.js";

// The release artifact, not the checkout, runs the mesh: `plexd install --root` puts the
// tarball's contents into a tree outside the checkout (no node_modules within reach), and
// mockcp, privhelper and the agents of two nodes are started from that tree's
// /usr/local/bin. The nodes must register and ping each other over their tunnel.

useHarness();

let users: SystemUsers;
let topo: Topology;
let root: string;

beforeAll(async () => {
  users = await ensureSystemUsers();
  const release = await buildRelease();
  root = makeTempDir("installed", { mode: 0o755 });
  await run([join(release.unpacked, "bin/plexd"), "install", "--root", root, "--api-url", "https://cp.invalid:8443", "--no-start"]);
  topo = await createTopology({ nodes: ["a", "b"] });
}, 240_000);

describe("the installed release", () => {
  it("forms a mesh: mockcp, privhelper and agents from the installed tree, nodes ping each other", async () => {
    const bin = (name: string): string => join(root, "usr/local/bin", name);
    const cp = await startCpOnHub(topo, { stun: true, bin: bin("plexd-mockcp") });
    const api = `https://${topo.hub.ip}:${cpPort}`;
    const executables = installedExecutables(root);
    const nodes: PlexdNode[] = [];
    for (const name of ["a", "b"]) nodes.push(await joinNode({ topo, cp, api, users, name, executables, config: { policy: { default: "allow" } } }));
    const [a, b] = nodes as [PlexdNode, PlexdNode];

    // The processes run the installed code: their script and the SO_PEERCRED addon they
    // mapped are the tree's (privhelper refuses to start without the addon).
    const lib = join(root, "usr/local/lib/plexd");
    expect(readFileSync(`/proc/${a.privhelper!.pid}/cmdline`, "utf8").split("\0")).toContain(bin("plexd-privhelper"));
    expect(readFileSync(`/proc/${a.privhelper!.pid}/maps`, "utf8")).toContain(join(lib, "peercred.node"));
    expect(readFileSync(`/proc/${a.agent!.pid}/cmdline`, "utf8").split("\0")).toContain(bin("plexd"));
    expect(readFileSync(`/proc/${cp.pid}/cmdline`, "utf8")).toContain(join(root, "usr/local/bin/plexd-mockcp"));

    await expect.poll(async () => (await wgShow(a.ns, a.iface).catch(() => ({ peers: [] }))).peers.length, { timeout: 60_000 }).toBe(1);
    await expect.poll(async () => (await ping(a.ns, meshIp(b), { count: 2, timeoutMs: 8000 })).ok && (await ping(b.ns, meshIp(a), { count: 2, timeoutMs: 8000 })).ok, { timeout: 60_000, interval: 1000 }).toBe(true);
  });
});
