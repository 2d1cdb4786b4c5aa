// `npm run demo` as a person runs it: the built bundle as a child process, plain and with --nat.
// Its output must show what it claims (checked against the kernel while --keep holds it up), and
// nothing it created may be left once it has exited.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { listNamespaces, registerCleanup, spawnInNamespace, sweepStale, useHarness, wgShow, type ProcessHandle } from "./harness/vitest.js";
import { distDir } from "./lib/node.js";

useHarness();

const demo = (args: string[]): ProcessHandle => spawnInNamespace({ name: "demo", argv: ["node", join(distDir, "plexd-demo.js"), ...args] });

/** The demo's run prefix; everything it creates carries it. */
async function prefixOf(p: ProcessHandle): Promise<string> {
  const prefix = (await p.waitForLine(/run prefix (px[0-9a-z]{4}):/, 60_000)).match![1]!;
  // A safety net should the demo die before its own teardown (asserted empty below first).
  registerCleanup(`demo leftovers ${prefix}`, async () => {
    await sweepStale(prefix);
  });
  return prefix;
}

/** What is left of a demo run: namespaces, temp and run dirs, UAPI sockets, processes. */
function leftovers(prefix: string, namespaces: string[]): string[] {
  const tag = prefix.slice(2);
  const list = (dir: string, test: (e: string) => boolean) => (existsSync(dir) ? readdirSync(dir).filter(test).map((e) => join(dir, e)) : []);
  const procs = readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        return argv.includes(`${prefix}-`) || argv.includes(`plexd${tag}`);
      } catch {
        return false;
      }
    })
    .map((pid) => `pid ${pid}: ${readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim()}`);
  return [...namespaces.map((n) => `netns ${n}`), ...list(tmpdir(), (e) => e.startsWith(`${prefix}-`)), ...list("/run/plexd", (e) => e.startsWith(`${prefix}-`)), ...list("/var/run/wireguard", (e) => e.startsWith(`plexd${tag}`)), ...procs];
}

const lines = (p: ProcessHandle, re: RegExp): RegExpMatchArray[] => [...p.stdout().matchAll(new RegExp(re.source, "gm"))];

/** The matrix rows: every cell off the diagonal must have replies. */
function matrixCells(p: ProcessHandle, names: string[]): string[] {
  return names.flatMap((name) => {
    const row = lines(p, new RegExp(`^\\[demo\\] ${name} {2,}(.+)$`))[0]?.[1]?.trim().split(/\s+/) ?? [];
    return row.filter((c) => c !== "-");
  });
}

describe("npm run demo", () => {
  it("--help lists --nat, --nodes and --keep", async () => {
    const p = demo(["--help"]);
    expect((await p.waitForExit(15_000)).exitCode).toBe(0);
    for (const flag of ["--nat", "--nodes N", "--keep"]) expect(p.stdout()).toContain(flag);
  });

  it("plain: nodes on one underlay find no NAT, mesh fully, and everything is removed", { timeout: 150_000 }, async () => {
    const p = demo(["--nodes", "2"]);
    const prefix = await prefixOf(p);
    const exit = await p.waitForExit(120_000);
    expect(exit.exitCode, p.output()).toBe(0);
    // On the underlay each node's public endpoint is its own address.
    for (const [name, ip] of [
      ["node1", "192.0.2.2"],
      ["node2", "192.0.2.3"],
    ]) {
      expect(p.stdout()).toContain(`[demo] ${name}: public endpoint ${ip}:51820, NAT type none`);
      expect(p.stdout()).toContain(`[demo] ${name}: plexd status: NAT ${ip}:51820 (none)`);
    }
    expect(p.stdout()).toMatch(/\[demo\] node1 -> node2: endpoint 192\.0\.2\.3:51820, handshake/);
    expect(matrixCells(p, ["node1", "node2"])).toEqual([expect.stringMatching(/^[1-9]\d*\/\d+$/), expect.stringMatching(/^[1-9]\d*\/\d+$/)]);
    expect(p.stdout()).toContain("[demo] ping matrix: 2/2 pairs answered");
    expect(p.stdout()).toContain("[demo] everything removed");
    expect(leftovers(prefix, await listNamespaces(`${prefix}-`))).toEqual([]);
  });

  it("--nat --keep: nodes behind masquerading routers report the routers' addresses, tunnel directly, and Ctrl-C removes everything", { timeout: 150_000 }, async () => {
    const p = demo(["--nat", "--nodes", "3", "--keep"]);
    const prefix = await prefixOf(p);
    await p.waitForLine(/press Ctrl-C to tear everything down/, 120_000);
    const out = p.stdout();
    const names = ["node1", "node2", "node3"];
    const routerIp = new Map(lines(p, /^\[demo\] (node\d): namespace \S+, address (198\.18\.\d+\.2), behind (router\d) \(\S+, public (192\.0\.2\.\d+), nftables masquerade\)$/).map((m) => [m[1]!, m[4]!]));
    expect([...routerIp.keys()]).toEqual(names);
    for (const name of names) {
      // What the control plane was told, and what the node itself says through its node API.
      expect(out).toContain(`[demo] ${name}: public endpoint ${routerIp.get(name)}:51820, NAT type full_cone (router${name.slice(4)}'s public address`);
      expect(out).toContain(`[demo] ${name}: plexd status: NAT ${routerIp.get(name)}:51820 (full_cone)`);
    }
    for (const a of names) {
      for (const b of names) {
        if (a === b) continue;
        expect(out).toMatch(new RegExp(`^\\[demo\\] ${a} -> ${b}: endpoint ${routerIp.get(b)!.replaceAll(".", "\\.")}:51820 = router${b.slice(4)}'s public address, handshake \\d+ s ago`, "m"));
      }
    }
    const cells = matrixCells(p, names);
    expect(cells).toHaveLength(6);
    for (const c of cells) expect(c).toMatch(/^[1-9]\d*\/\d+$/);
    expect(out).toContain("[demo] ping matrix: 6/6 pairs answered");
    expect(out).toContain("directly through the NATs");

    // While it stays up, the kernel agrees: each node's peers are at the routers' public addresses.
    const hints = lines(p, /^\[demo\] {3}ip netns exec (\S+) wg show (\S+) +# (node\d)$/);
    expect(hints.map((m) => m[3])).toEqual(names);
    const publicIps = new Set(routerIp.values());
    for (const [, ns, iface, name] of hints) {
      const dev = await wgShow(ns!, iface!);
      expect(dev.peers).toHaveLength(2);
      const own = routerIp.get(name!)!;
      expect(dev.peers.map((x) => x.endpoint?.split(":")[0]).sort()).toEqual([...publicIps].filter((ip) => ip !== own).sort());
      for (const peer of dev.peers) expect(peer.latestHandshake).toBeGreaterThan(0);
    }
    expect(await listNamespaces(`${prefix}-`)).toHaveLength(1 + 3 + 3); // hub, routers, sites
    // The leftover check sees a running demo's every kind of resource, so its empty result below means something.
    const up = leftovers(prefix, await listNamespaces(`${prefix}-`)).join("\n");
    for (const kind of [/^netns /m, new RegExp(`^${tmpdir()}/${prefix}-node-node1-`, "m"), /^\/run\/plexd\//m, /^\/var\/run\/wireguard\/plexd\w+\.sock$/m, /^pid \d+: \S*wireguard-go -f plexd/m, /^pid \d+: node (?:--\S+ )*\S+plexd-privhelper\.js/m]) {
      expect(up).toMatch(kind);
    }

    p.signal("SIGINT");
    const exit = await p.waitForExit(60_000);
    expect(exit.exitCode, p.output()).toBe(0);
    expect(p.stdout()).toContain("[demo] everything removed");
    expect(leftovers(prefix, await listNamespaces(`${prefix}-`))).toEqual([]);
  });
});
