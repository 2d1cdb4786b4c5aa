import { existsSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import {
  createTopology,
  ensureSystemUsers,
  keptLogsRoot,
  listLinks,
  listNamespaces,
  makeTempDir,
  namespacePids,
  nftApply,
  nftList,
  nsExec,
  pendingCleanups,
  cleanupMark,
  ping,
  preserveLogsSince,
  run,
  RUN_PREFIX,
  spawnInNamespace,
  sweepStale,
  tcpConnect,
  tcpListen,
  useHarness,
  wgShow,
  withCleanupScope,
} from "./harness/vitest.js";

useHarness();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every interface in the machine's own namespace whose name carries this run's prefix. */
async function rootLinksOfRun(): Promise<string[]> {
  const r = await run(["ip", "-j", "link", "show"]);
  return (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname).filter((n) => n.startsWith(RUN_PREFIX));
}

async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

describe("e2e harness", () => {
  it("builds a 3-node underlay whose nodes and hub reach each other", async () => {
    const topo = await createTopology({ nodes: 3 });
    expect(topo.nodes.map((n) => n.ip)).toEqual(["192.0.2.2", "192.0.2.3", "192.0.2.4"]);
    expect(topo.hub.ip).toBe("192.0.2.1");
    for (const n of topo.nodes) expect(n.ns.startsWith(RUN_PREFIX)).toBe(true);
    expect(await listNamespaces()).toEqual(expect.arrayContaining([topo.hub.ns, ...topo.nodes.map((n) => n.ns)]));

    for (const a of topo.nodes) {
      for (const b of topo.nodes) {
        if (a === b) continue;
        const r = await ping(a.ns, b.ip, { count: 2 });
        expect(r, `${a.name} -> ${b.name}: ${r.output}`).toMatchObject({ ok: true, received: 2, lossPercent: 0 });
      }
      expect((await ping(a.ns, topo.hub.ip, { count: 1 })).ok).toBe(true);
    }
    // An address nobody holds does not answer: the check can fail.
    const none = await ping(topo.nodes[0]!.ns, "192.0.2.200", { count: 1, timeoutMs: 1500 });
    expect(none).toMatchObject({ ok: false, received: 0, lossPercent: 100 });

    const links = await listLinks(topo.nodes[1]!.ns);
    expect(links.find((l) => l.ifname === "eth0")).toMatchObject({ kind: "veth" });
    const hubLinks = await listLinks(topo.hub.ns);
    expect(hubLinks.filter((l) => l.master === "br0").map((l) => l.ifname).sort()).toEqual(["vh1", "vh2", "vh3"]);

    await topo.destroy();
    expect(await listNamespaces()).toEqual([]);
  });

  it("uses named nodes and a custom subnet", async () => {
    const topo = await createTopology({ nodes: ["alice", "bob"], subnet: "198.51.100.0/24" });
    expect(topo.node("bob")).toMatchObject({ ip: "198.51.100.3", cidr: "198.51.100.3/24", iface: "eth0" });
    expect(topo.node("alice").ns).toBe(`${topo.id}-alice`);
    const r = await topo.exec(topo.node("alice").ns, ["ip", "-j", "route", "show", "default"]);
    expect(JSON.parse(r.stdout)).toMatchObject([{ dst: "default", gateway: "198.51.100.1" }]);
    expect(() => topo.node("carol")).toThrow(/no node carol/);
  });

  it("spawns a process in a namespace, waits for its output, and reaps it", async () => {
    const topo = await createTopology({ nodes: 1 });
    const n1 = topo.nodes[0]!;
    const logDir = makeTempDir("logs");
    const proc = spawnInNamespace({
      ns: n1.ns,
      argv: [process.execPath, "-e", 'console.log("ready " + require("node:os").networkInterfaces().eth0[0].address); setInterval(() => {}, 1000)'],
      name: "waiter",
      logDir,
    });
    const line = await proc.waitForLine(/^ready (\S+)$/, 10_000);
    // The process sees the namespace's interfaces, not the machine's.
    expect(line.match?.[1]).toBe(n1.ip);
    // `ip netns exec` execs in place: the PID we hold is the program's PID, inside the namespace.
    expect(await namespacePids(n1.ns)).toContain(proc.pid);
    // The log file is written through a stream: on a busy machine it lands a moment after the line is seen.
    await expect.poll(() => readFileSync(proc.logPath, "utf8"), { timeout: 10_000 }).toContain(`ready ${n1.ip}`);

    await expect(proc.waitForLine(/never printed/, 200)).rejects.toThrow(/no line matching/);
    const exit = await proc.kill("SIGTERM");
    expect(exit.signal).toBe("SIGTERM");
    expect(alive(proc.pid)).toBe(false);
    expect(proc.exited).toBe(true);
    await expect(proc.waitForLine(/anything/, 100)).rejects.toThrow(/exited/);

    const failing = spawnInNamespace({ argv: [process.execPath, "-e", 'console.error("boom"); process.exit(7)'], name: "failing", logDir });
    expect(await failing.waitForExit(10_000)).toEqual({ exitCode: 7, signal: null });
    expect(failing.stderr()).toContain("boom");
  });

  it("escalates to SIGKILL when a process ignores SIGTERM, and kills its process group", async () => {
    const proc = spawnInNamespace({
      argv: [
        process.execPath,
        "-e",
        // A child in the same group, like a helper daemon that did not detach.
        'process.on("SIGTERM", () => {}); const c = require("node:child_process").spawn("sleep", ["300"], { stdio: "ignore" }); console.log("child " + c.pid); setInterval(() => {}, 1000)',
      ],
      name: "stubborn",
    });
    const child = Number((await proc.waitForLine(/^child (\d+)$/)).match?.[1]);
    expect(alive(child)).toBe(true);
    const t0 = Date.now();
    const exit = await proc.kill("SIGTERM", { graceMs: 500 });
    expect(exit.signal).toBe("SIGKILL");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    expect(await waitUntil(() => !alive(child), 3_000)).toBe(true);
  });

  it("leaves no namespace, interface, process or temp dir behind when an inner step fails", async () => {
    const created: { namespaces: string[]; pids: number[]; dirs: string[] } = { namespaces: [], pids: [], dirs: [] };
    const before = pendingCleanups().length;
    await expect(
      withCleanupScope(async () => {
        const topo = await createTopology({ nodes: 2 });
        created.namespaces.push(topo.hub.ns, ...topo.nodes.map((n) => n.ns));
        const dir = makeTempDir("scope");
        created.dirs.push(dir);
        const proc = spawnInNamespace({ ns: topo.nodes[0]!.ns, argv: ["sleep", "300"], name: "sleeper", logDir: dir });
        created.pids.push(proc.pid);
        // A daemon nobody holds a handle to (as wireguard-go after daemonising).
        await nsExec(topo.nodes[1]!.ns, ["setsid", "-f", "sleep", "301"]);
        created.pids.push(...(await namespacePids(topo.nodes[1]!.ns)));
        expect(created.pids.length).toBeGreaterThanOrEqual(2);
        expect(created.pids.every(alive)).toBe(true);
        throw new Error("deliberate failure in an inner step");
      }),
    ).rejects.toThrow("deliberate failure");

    const listed = (await run(["ip", "netns", "list"])).stdout;
    for (const ns of created.namespaces) expect(listed).not.toContain(ns);
    expect(await rootLinksOfRun()).toEqual([]);
    for (const pid of created.pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    for (const pid of created.pids) expect((await run(["pgrep", "-F", "/dev/stdin"], { input: `${pid}\n`, reject: false })).exitCode).toBe(1);
    for (const dir of created.dirs) expect(existsSync(dir)).toBe(false);
    expect(pendingCleanups().length).toBe(before);
  });

  describe("cleanup when the process itself dies", () => {
    for (const mode of ["throw", "exit", "signal"] as const) {
      it(`cleans up on ${mode}`, async () => {
        const dir = makeTempDir("bundle");
        const bundle = join(dir, "crash.mjs");
        await build({
          entryPoints: [join(import.meta.dirname, "harness/fixtures/crash.ts")],
          bundle: true,
          platform: "node",
          format: "esm",
          target: "node20",
          outfile: bundle,
          logLevel: "error",
          banner: { js: 'import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);' },
        });
        const proc = spawnInNamespace({ argv: [process.execPath, bundle, mode], name: `crash-${mode}`, logDir: dir, stdin: true });
        const info = JSON.parse((await proc.waitForLine(/^\{/, 30_000)).line) as { namespaces: string[]; pids: number[]; tracked: number; dir: string };
        expect(info.pids).toContain(info.tracked);
        expect(info.pids.length).toBe(2);
        expect(existsSync(info.dir)).toBe(true);
        expect(info.pids.every(alive)).toBe(true);
        if (mode === "signal") proc.signal("SIGTERM", { group: false });
        else proc.writeStdin("go\n");
        const exit = await proc.waitForExit(30_000);
        if (mode === "signal") expect(exit.signal).toBe("SIGTERM");
        else expect(exit.exitCode).toBe(mode === "exit" ? 3 : 1);
        if (mode === "throw") expect(proc.stderr()).toContain("deliberate uncaught failure");

        const listed = (await run(["ip", "netns", "list"])).stdout;
        for (const ns of info.namespaces) expect(listed).not.toContain(ns);
        for (const pid of info.pids) expect(await waitUntil(() => !alive(pid), 2_000), `pid ${pid}`).toBe(true);
        expect(existsSync(info.dir)).toBe(false);
      });
    }
  });

  it("runs processes as plexd, as the outsider and with explicit ids", async () => {
    const users = await ensureSystemUsers();
    expect(await ensureSystemUsers()).toEqual(users); // idempotent
    const topo = await createTopology({ nodes: 1 });
    const ns = topo.nodes[0]!.ns;
    const id = async (user: Parameters<typeof spawnInNamespace>[0]["user"]): Promise<string> => {
      const p = spawnInNamespace({ ns, argv: ["id"], name: "id", ...(user ? { user } : {}) });
      expect((await p.waitForExit(10_000)).exitCode).toBe(0);
      return p.stdout().trim();
    };
    const { plexd, outsider, groups } = users;
    expect(plexd.gid).toBe(groups.plexd);
    expect(await id("plexd")).toBe(`uid=${plexd.uid}(plexd) gid=${groups.plexd}(plexd) groups=${groups.plexd}(plexd)`);
    const out = await id("plexd-outsider");
    expect(out).toMatch(new RegExp(`^uid=${outsider.uid}\\(plexd-outsider\\) gid=${outsider.gid}\\(plexd-outsider\\) groups=${outsider.gid}\\(plexd-outsider\\)$`));
    expect(out).not.toContain("(plexd)");
    // `id` lists the primary group first, then the supplementary ones (kernel order).
    const explicit = await id({ uid: outsider.uid, gid: outsider.gid, groups: [groups.plexd, groups.plexdSecrets] });
    const m = /^uid=(\d+)\(plexd-outsider\) gid=(\d+)\(plexd-outsider\) groups=(.*)$/.exec(explicit);
    expect(m, explicit).not.toBeNull();
    expect([Number(m![1]), Number(m![2])]).toEqual([outsider.uid, outsider.gid]);
    expect(m![3]!.split(",").sort()).toEqual(
      [`${outsider.gid}(plexd-outsider)`, `${groups.plexd}(plexd)`, `${groups.plexdSecrets}(plexd-secrets)`].sort(),
    );
    expect(await id(undefined)).toMatch(/^uid=0\(root\)/);

    const home = await run(["getent", "passwd", "plexd"]);
    expect(home.stdout.trim().split(":").slice(5)).toEqual(["/var/lib/plexd", "/usr/sbin/nologin"]);
  });

  it("checks TCP reachability and reads the nftables ruleset", async () => {
    const topo = await createTopology({ nodes: 2 });
    const [a, b] = [topo.nodes[0]!, topo.nodes[1]!];
    const { port } = await tcpListen(b.ns, b.ip, 0);
    expect(port).toBeGreaterThan(0);
    expect(await tcpConnect(a.ns, b.ip, port)).toMatchObject({ ok: true, error: null });
    expect(await tcpConnect(a.ns, b.ip, port + 1 === 65536 ? 1 : port + 1)).toMatchObject({ ok: false, error: "ECONNREFUSED" });

    await nftApply(
      b.ns,
      [
        "table inet t {",
        "  chain input {",
        "    type filter hook input priority 0; policy accept;",
        `    tcp dport ${port} drop comment "harness-test"`,
        "  }",
        "}",
        "",
      ].join("\n"),
    );
    expect(await tcpConnect(a.ns, b.ip, port, 800)).toMatchObject({ ok: false, error: "ETIMEDOUT" });
    const rs = await nftList(b.ns);
    expect(rs.tables).toEqual([expect.objectContaining({ family: "inet", name: "t" })]);
    expect(rs.rules.some((r) => r.comment === "harness-test")).toBe(true);
    expect((await nftList(a.ns)).tables).toEqual([]);
  });

  it("reads wg show from a wireguard-go interface and stops the daemon with its namespace", async () => {
    const topo = await createTopology({ nodes: 2 });
    const [a, b] = [topo.nodes[0]!, topo.nodes[1]!];
    // wireguard-go's UAPI sockets live in /var/run/wireguard for every namespace alike, so
    // interface names carry the run prefix.
    const ifA = `${RUN_PREFIX}wa`;
    const ifB = `${RUN_PREFIX}wb`;
    const keys = async (): Promise<{ priv: string; pub: string }> => {
      const priv = (await run(["wg", "genkey"])).stdout.trim();
      return { priv, pub: (await run(["wg", "pubkey"], { input: priv })).stdout.trim() };
    };
    const ka = await keys();
    const kb = await keys();
    // Node gives children a socketpair, not a pipe, as stdin: `wg ... private-key /dev/stdin`
    // fails with ENXIO, so the key goes through a 0600 file in a 0700 temp dir.
    const keyDir = makeTempDir("wgkeys");
    const up = async (ns: string, iface: string, k: { priv: string }, peer: string, peerIp: string, meshIp: string, peerMesh: string) => {
      const keyFile = join(keyDir, iface);
      writeFileSync(keyFile, k.priv + "\n", { mode: 0o600 });
      await nsExec(ns, ["wireguard-go", iface], { output: "ignore" });
      await nsExec(ns, ["wg", "set", iface, "private-key", keyFile, "listen-port", "51820", "peer", peer, "allowed-ips", `${peerMesh}/32`, "endpoint", `${peerIp}:51820`]);
      await nsExec(ns, ["ip", "addr", "add", `${meshIp}/24`, "dev", iface]);
      await nsExec(ns, ["ip", "link", "set", iface, "up"]);
    };
    await up(a.ns, ifA, ka, kb.pub, b.ip, "10.99.0.1", "10.99.0.2");
    await up(b.ns, ifB, kb, ka.pub, a.ip, "10.99.0.2", "10.99.0.1");
    const daemons = [...(await namespacePids(a.ns)), ...(await namespacePids(b.ns))];
    expect(daemons.length).toBe(2);

    const r = await ping(a.ns, "10.99.0.2", { count: 3, timeoutMs: 8_000 });
    expect(r.ok, r.output).toBe(true);
    const show = await wgShow(a.ns, ifA);
    expect(show).toMatchObject({ hasPrivateKey: true, publicKey: ka.pub, listenPort: 51820 });
    expect(show.peers).toEqual([
      expect.objectContaining({ publicKey: kb.pub, endpoint: `${b.ip}:51820`, allowedIps: ["10.99.0.2/32"], hasPresharedKey: false }),
    ]);
    expect(show.peers[0]!.latestHandshake).toBeGreaterThan(0);
    expect(JSON.stringify(show)).not.toContain(ka.priv);

    await topo.destroy();
    for (const pid of daemons) expect(alive(pid), `wireguard-go ${pid}`).toBe(false);
    expect(existsSync(`/var/run/wireguard/${ifA}.sock`)).toBe(false);
    expect(existsSync(`/var/run/wireguard/${ifB}.sock`)).toBe(false);
  });

  it("keeps the logs of a failed test and prints their tails", async () => {
    const mark = cleanupMark();
    const p = spawnInNamespace({ argv: [process.execPath, "-e", 'for (let i = 0; i < 100; i++) console.log("line " + i)'], name: "chatty" });
    await p.waitForExit(10_000);
    await p.waitForLine(/^line 99$/);
    const kept = preserveLogsSince(mark, "harness self-test");
    try {
      expect(kept).toHaveLength(1);
      expect(kept[0]!.startsWith(keptLogsRoot())).toBe(true);
      expect(readFileSync(kept[0]!, "utf8").split("\n").filter(Boolean)).toHaveLength(100);
    } finally {
      // Only this test's own copy: logs kept for genuinely failed tests of the run stay.
      if (kept[0]) rmSync(dirname(kept[0]), { recursive: true, force: true });
      // And the run's folder and its parent, when nothing else was kept there.
      try {
        rmdirSync(keptLogsRoot());
        rmdirSync(dirname(keptLogsRoot()));
      } catch {
        // not empty: logs of genuinely failed tests stay
      }
    }
  });

  it("sweeps leftovers of this run's prefix only", async () => {
    await expect(sweepStale("px")).rejects.toThrow(/not a run prefix/);
    const ns = `${RUN_PREFIX}-leftover`;
    await run(["ip", "netns", "add", ns]); // deliberately not registered
    await run(["ip", "netns", "exec", ns, "setsid", "-f", "sleep", "302"], { output: "ignore" });
    const [pid] = await namespacePids(ns);
    const report = await sweepStale();
    expect(report.namespaces).toEqual([ns]);
    expect(report.killedPids).toEqual([pid]);
    expect(await listNamespaces()).toEqual([]);
    expect(await waitUntil(() => !alive(pid!), 2_000)).toBe(true);
  });
});
