// ApplyMesh / ReadMesh / restart re-adoption / --cleanup (also of a StunProbe table left by a
// privhelper killed mid-probe) with the built privhelper and a
// real wireguard-go, inside namespaces this test creates and removes.
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { connectPrivhelper, type PrivClient } from "../../agent/privclient/client.js";
import { WireGuardImpl } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { ensureBuilt, ensurePrivUsers, isRunning, privhelperBin, startPrivhelper, stopPrivhelper } from "./privhelper-util.js";

const tag = randomBytes(3).toString("hex");
const nsA = `pxmesh-a-${tag}`;
const nsB = `pxmesh-b-${tag}`;
// The wireguard-go UAPI socket path is global (/var/run/wireguard/NAME.sock), so names
// must be unique across concurrently running tests, not just per namespace.
const iface = `plexd${tag}`;
const peerIface = `pxp${tag}`;
let work: string;
let configPath: string;
let sock: string;
let helper: ChildProcess | undefined;
let client: PrivClient;
const keys = { a: "", aPub: "", b: "", bPub: "", psk: "", x: [] as string[] };

async function sh(argv: string[], input?: string) {
  const r = await execa(argv[0]!, argv.slice(1), { ...(input !== undefined ? { input } : {}), timeout: 20_000 });
  return r.stdout;
}
const inA = (argv: string[], input?: string) => sh(["ip", "netns", "exec", nsA, ...argv], input);
const inB = (argv: string[], input?: string) => sh(["ip", "netns", "exec", nsB, ...argv], input);

async function genKey(): Promise<[string, string]> {
  const priv = (await sh(["wg", "genkey"])).trim();
  return [priv, (await sh(["wg", "pubkey"], priv)).trim()];
}

/** wireguard-go processes serving `name` (by argv), wherever they run. */
async function wgGoPids(name: string): Promise<number[]> {
  const r = await execa("pgrep", ["-f", `^(/usr/bin/)?wireguard-go -f ${name}$`], { reject: false });
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

function startHelper() {
  return startPrivhelper(["--config", configPath, "--socket", sock], sock, ["ip", "netns", "exec", nsA]);
}

const spec = (peers: object[] = [{ publicKey: keys.bPub, presharedKey: keys.psk, endpoint: "192.0.2.2:51820", allowedIps: ["10.100.0.2/32"], persistentKeepalive: 5 }]) => ({
  interface: iface,
  privateKey: keys.a,
  listenPort: 51820,
  addresses: ["10.100.0.1/16"],
  mtu: 1380,
  peers,
});

beforeAll(async () => {
  await ensureBuilt();
  await ensurePrivUsers();
  work = await mkdtemp(join(tmpdir(), "plexd-privmesh-"));
  await chmod(work, 0o755);
  configPath = join(work, "config.yaml");
  sock = join(work, "run", "privhelper.sock");
  await writeFile(configPath, `mesh:\n  interface: ${iface}\n`);
  [keys.a, keys.aPub] = await genKey();
  [keys.b, keys.bPub] = await genKey();
  keys.psk = (await sh(["wg", "genpsk"])).trim();
  for (let i = 0; i < 3; i++) keys.x.push((await genKey())[1]);

  // Two namespaces joined by a veth pair; B runs a hand-configured WireGuard peer.
  for (const ns of [nsA, nsB]) {
    await sh(["ip", "netns", "add", ns]);
    await sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
  }
  await sh(["ip", "link", "add", `va${tag}`, "netns", nsA, "type", "veth", "peer", "name", `vb${tag}`, "netns", nsB]);
  await sh(["ip", "-n", nsA, "addr", "add", "192.0.2.1/24", "dev", `va${tag}`]);
  await sh(["ip", "-n", nsB, "addr", "add", "192.0.2.2/24", "dev", `vb${tag}`]);
  await sh(["ip", "-n", nsA, "link", "set", `va${tag}`, "up"]);
  await sh(["ip", "-n", nsB, "link", "set", `vb${tag}`, "up"]);
  await inB(["wireguard-go", peerIface]); // daemonizes
  // (a file, not stdin: Node's stdin pipe is a socketpair, which wg cannot open by path)
  await writeFile(join(work, "peer.conf"), `[Interface]\nPrivateKey = ${keys.b}\nListenPort = 51820\n[Peer]\nPublicKey = ${keys.aPub}\nPresharedKey = ${keys.psk}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 10.100.0.1/32\n`, { mode: 0o600 });
  await inB(["wg", "setconf", peerIface, join(work, "peer.conf")]);
  await inB(["ip", "addr", "add", "10.100.0.2/16", "dev", peerIface]);
  await inB(["ip", "link", "set", peerIface, "up"]);

});

// Every test starts from a running privhelper serving the base device (spec()) with a live
// tunnel to B, whatever the test before it killed, recreated or cleaned up.
beforeEach(async () => {
  if (!isRunning(helper)) {
    client?.close();
    helper = await startHelper();
    client = connectPrivhelper({ socketPath: sock });
  }
  const res = await client.applyMesh({ spec: spec() });
  expect(res.result?.failedStep).toBe("");
  await inB(["ping", "-c", "1", "-W", "5", "10.100.0.1"]);
});

afterAll(async () => {
  client?.close();
  await stopPrivhelper(helper);
  // Only processes this test started: wireguard-go for our two uniquely named interfaces.
  for (const name of [iface, peerIface]) {
    for (const pid of [...(await wgGoPids(name)), ...(await execa("pgrep", ["-f", `^wireguard-go ${name}$`], { reject: false })).stdout.split("\n").filter(Boolean).map(Number)]) process.kill(pid, "SIGKILL");
    // A SIGKILLed wireguard-go leaves its (machine-wide) UAPI socket behind.
    await rm(`/var/run/wireguard/${name}.sock`, { force: true });
  }
  for (const ns of [nsA, nsB]) await execa("ip", ["netns", "del", ns], { reject: false });
  if (work) await rm(work, { recursive: true, force: true });
});

describe("privhelper mesh", () => {
  it("creates a wireguard-go device with exactly the given config", async () => {
    // From nothing: the base device goes first.
    await client.teardown({});
    expect(await wgGoPids(iface)).toEqual([]);
    const res = await client.applyMesh({ spec: spec() });
    expect(res.result?.failedStep).toBe("");
    expect(res.result?.changed).toBe(true);
    expect(res.result?.plan.map((s) => s.kind)).toContain("create_interface");
    const dump = (await inA(["wg", "show", iface, "dump"])).split("\n");
    expect(dump[0]).toBe(`${keys.a}\t${keys.aPub}\t51820\toff`);
    expect(dump[1]).toBe(`${keys.bPub}\t${keys.psk}\t192.0.2.2:51820\t10.100.0.2/32\t${dump[1]!.split("\t")[4]}\t${dump[1]!.split("\t")[5]}\t${dump[1]!.split("\t")[6]}\t5`);
    expect(dump).toHaveLength(2);
    const link = await inA(["ip", "-j", "addr", "show", "dev", iface]);
    expect(link).toContain('"mtu":1380');
    expect(link).toContain('"local":"10.100.0.1","prefixlen":16');
    expect(link).toMatch(/"flags":\[[^\]]*"UP"/);
    expect(await wgGoPids(iface)).toHaveLength(1);
    // a real tunnel: B reaches A's mesh IP through the device privhelper made
    await inB(["ping", "-c", "1", "-W", "5", "10.100.0.1"]);
  });

  it("is idempotent: the same spec twice changes nothing", async () => {
    const before = await inA(["wg", "show", iface, "dump"]);
    const pids = await wgGoPids(iface);
    const res = await client.applyMesh({ spec: spec() });
    expect(res.result).toMatchObject({ changed: false, plan: [] });
    expect(await wgGoPids(iface)).toEqual(pids);
    const after = await inA(["wg", "show", iface, "dump"]);
    expect(after.split("\n")[0]).toBe(before.split("\n")[0]);
  });

  it("reads the live device back", async () => {
    const m = await client.readMesh({ interface: iface });
    expect(m).toMatchObject({ exists: true, up: true, interface: iface, publicKey: keys.aPub, listenPort: 51820, mtu: 1380, addresses: ["10.100.0.1/16"], implementation: WireGuardImpl.USERSPACE });
    expect(m.peers).toHaveLength(1);
    const p = m.peers[0]!;
    expect(p.publicKey).toBe(keys.bPub);
    expect(p.endpoint).toBe("192.0.2.2:51820");
    expect(p.allowedIps).toEqual(["10.100.0.2/32"]);
    const { createHash } = await import("node:crypto");
    expect(p.pskSha256).toBe(createHash("sha256").update(Buffer.from(keys.psk, "base64")).digest("hex"));
    expect(p.lastHandshake?.seconds).toBeGreaterThan(0n);
    expect(p.rxBytes).toBeGreaterThan(0n);
    expect(JSON.stringify(m, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).not.toContain(keys.psk);
  });

  it("changes one peer and removes others in one step each; dry_run changes nothing", async () => {
    const three = keys.x.map((k, i) => ({ publicKey: k, allowedIps: [`10.100.1.${i}/32`] }));
    const base = spec().peers;
    await client.applyMesh({ spec: spec([...base, ...three]) });
    const dry = await client.applyMesh({ spec: spec(base), dryRun: true });
    expect(dry.result?.changed).toBe(false);
    // Each removed peer takes its route along (WireGuard installs none; privhelper keeps them).
    expect(dry.result?.plan.map((s) => s.kind)).toEqual(["remove_peer", "remove_peer", "remove_peer", "remove_route", "remove_route", "remove_route"]);
    expect((await inA(["wg", "show", iface, "peers"])).split("\n")).toHaveLength(4);
    const res = await client.applyMesh({ spec: spec(base) });
    expect(res.result?.plan).toHaveLength(6);
    expect((await inA(["ip", "-4", "route", "show", "dev", iface])).split("\n").filter((l) => !l.includes("proto kernel") && l.trim() !== "")).toEqual(["10.100.0.2 proto 80 scope link "]);
    expect((await inA(["wg", "show", iface, "peers"])).trim()).toBe(keys.bPub);
    await inB(["ping", "-c", "1", "-W", "5", "10.100.0.1"]);
  });

  it.each([
    ["a foreign interface", { interface: "eth0" }],
    ["shell characters in the name", { interface: `${iface};id` }],
    ["a bad key", { privateKey: "not-a-key" }],
    ["a bad CIDR", { addresses: ["10.100.0.1/40"] }],
    ["an oversize peer list", { peers: Array.from({ length: 20_001 }, (_, i) => ({ publicKey: keys.x[i % 3]! })) }],
  ])("refuses %s with INVALID_ARGUMENT and leaves the device unchanged", async (_what, over) => {
    const before = await client.readMesh({ interface: iface });
    await expect(client.applyMesh({ spec: { ...spec(), ...over } })).rejects.toMatchObject({ code: "invalid_argument" });
    const after = await client.readMesh({ interface: iface });
    // wireguard-go lists peers in no fixed order.
    const view = (r: typeof before) => r.peers.map((p) => [p.publicKey, p.allowedIps, p.endpoint]).sort();
    expect(view(after)).toEqual(view(before));
    expect([after.listenPort, after.addresses, after.mtu, after.publicKey]).toEqual([before.listenPort, before.addresses, before.mtu, before.publicKey]);
  });

  it("survives kill -9 of privhelper and re-adopts the device after restart", async () => {
    const pids = await wgGoPids(iface);
    expect(pids).toHaveLength(1);
    await stopPrivhelper(helper, "SIGKILL");
    // the tunnel keeps working with privhelper gone
    await inB(["ping", "-c", "1", "-W", "5", "10.100.0.1"]);
    expect(await wgGoPids(iface)).toEqual(pids);
    helper = await startHelper(); // removes the stale socket of the killed instance
    client.close();
    client = connectPrivhelper({ socketPath: sock });
    const res = await client.applyMesh({ spec: spec() });
    expect(res.result).toMatchObject({ changed: false, plan: [] });
    expect(await wgGoPids(iface)).toEqual(pids);
    await inB(["ping", "-c", "1", "-W", "5", "10.100.0.1"]);
  });

  it("recreate replaces the device (new wireguard-go) and the tunnel comes back", async () => {
    const old = await wgGoPids(iface);
    const res = await client.applyMesh({ spec: spec(), recreate: true });
    expect(res.result?.failedStep).toBe("");
    expect(res.result?.plan[0]).toMatchObject({ kind: "recreate_interface", detail: iface });
    const now = await wgGoPids(iface);
    expect(now).toHaveLength(1);
    expect(now).not.toEqual(old);
    await inB(["ping", "-c", "1", "-W", "5", "10.100.0.1"]);
  });

  it("--cleanup removes the plexd interface, its wireguard-go, table inet plexd and a plexd_stun left mid-probe, and nothing else", async () => {
    // B drops STUN silently, so a probe to it waits out its timeout with table ip plexd_stun in
    // place; privhelper is killed in that window, as a crash mid-probe would.
    await writeFile(join(work, "sink.nft"), "table inet sink {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    udp dport 3478 drop\n  }\n}\n");
    await inB(["nft", "-f", join(work, "sink.nft")]);
    const binding = Buffer.concat([Buffer.from([0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42]), randomBytes(12)]);
    const probe = client.stunProbe({ ip: "192.0.2.2", port: 3478, request: binding, timeoutMs: 10_000 }, { timeoutMs: 15_000 }).then(
      () => "answered",
      (err: unknown) => PlexdError.from(err).code,
    );
    const stunTable = () => execa("ip", ["netns", "exec", nsA, "nft", "list", "table", "ip", "plexd_stun"], { reject: false });
    await expect.poll(async () => (await stunTable()).exitCode, { timeout: 8_000, interval: 50 }).toBe(0);
    await stopPrivhelper(helper, "SIGKILL");
    expect(await probe).not.toBe("answered");
    // The leftover is the probe's own SNAT to the mesh port, and it outlived privhelper.
    expect((await stunTable()).stdout).toContain(`snat to 192.0.2.1:51820`);

    // Foreign tables, one with plexd's table name in another family, and a plexd-ish link.
    await writeFile(join(work, "tables.nft"), "table inet plexd {\n  chain input {\n    type filter hook input priority 0; policy accept;\n  }\n}\ntable inet bystander {\n}\ntable inet plexd_stun {\n}\ntable ip nat {\n}\n");
    await inA(["nft", "-f", join(work, "tables.nft")]);
    await inA(["ip", "link", "add", "plexdx", "type", "veth", "peer", "name", "plexdy"]); // plexd-prefixed but not configured
    try {
      await checkCleanup();
    } finally {
      // The bystanders go again, so that no later test runs among them.
      await inA(["ip", "link", "del", "plexdx"]).catch(() => undefined);
      for (const t of ["inet bystander", "inet plexd_stun", "ip nat"]) await inA(["nft", "delete", "table", ...t.split(" ")]).catch(() => undefined);
      await inB(["nft", "delete", "table", "inet", "sink"]).catch(() => undefined);
    }
  });
});

/** Runs --cleanup beside the bystanders the test laid out and checks that only plexd's own went. */
async function checkCleanup(): Promise<void> {
  const r = await execa("ip", ["netns", "exec", nsA, privhelperBin, "--config", configPath, "--cleanup"], { reject: false, timeout: 30_000 });
  expect(r.exitCode).toBe(0);
  expect(await wgGoPids(iface)).toEqual([]);
  const links = await inA(["ip", "-j", "link", "show"]);
  expect(links).not.toContain(`"${iface}"`);
  expect(links).toContain('"plexdx"');
  expect(links).toContain(`"va${tag}"`);
  expect(r.stderr).toContain('"removed":["wireguard-go pid');
  expect(r.stderr).toMatch(/"removed":\[[^\]]*"table inet plexd","table ip plexd_stun"\]/);
  const tables = (await inA(["nft", "list", "tables"])).split("\n").filter(Boolean).sort();
  expect(tables).toEqual(["table inet bystander", "table inet plexd_stun", "table ip nat"]);
  // B's own wireguard-go is untouched
  expect((await execa("pgrep", ["-f", `^wireguard-go ${peerIface}$`], { reject: false })).stdout).not.toBe("");
}
