import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { RUN_PREFIX, createTopology, ensureSystemUsers, makeTempDir, nftList, nsExec, ping, registerCleanup, run, useHarness, wgShow, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { joinNode, meshIp, nodeId } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";

// WireGuard user access on real kernel networking: a bridge `br` and two mesh nodes `a` and `b`
// (both with policy default allow, so only the bridge decides), and a "user device" namespace on
// the internet side that is configured with plain wg-quick (wireguard-go) from the output of
// `plexd bridge user-config`. The bridge's policy lets the user's address reach `a` and nothing
// else; revoking the user cuts it off; more users than max_peers and a default-route address are
// refused with their reasons while the admitted user keeps working.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let a: PlexdNode;
let b: PlexdNode;
let br: PlexdNode;
// wireguard-go's UAPI sockets (/var/run/wireguard) are shared by every namespace: unique names.
const accessIf = `${RUN_PREFIX}ua`;
const clientIf = `${RUN_PREFIX}uc`;
const userAddr = "10.100.250.2";
let userKey: { priv: string; pub: string; file: string };
let dir: string;
const wgQuickEnv = { WG_QUICK_USERSPACE_IMPLEMENTATION: "wireguard-go" };

const wgKeys = async () => {
  const priv = (await run(["wg", "genkey"])).stdout.trim();
  return { priv, pub: (await run(["wg", "pubkey"], { input: priv })).stdout.trim() };
};
const accessPeers = async () => (await wgShow(br.ns, accessIf).catch(() => ({ peers: [] }))).peers;
const bridgePeerIps = async (n: PlexdNode) => (await wgShow(n.ns, n.iface).catch(() => ({ peers: [] }))).peers.flatMap((p) => p.allowedIps);

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["a", "b", "br", "user"] });
  cp = await startCpOnHub(topo, { stun: true });
  const api = `https://${topo.hub.ip}:${cpPort}`;
  a = await joinNode({ topo, cp, api, users, name: "a", config: { policy: { default: "allow" } } });
  b = await joinNode({ topo, cp, api, users, name: "b", config: { policy: { default: "allow" } } });
  br = await joinNode({
    topo,
    cp,
    api,
    users,
    name: "br",
    config: { mode: "bridge", policy: { default: "allow" }, bridge: { relay: { enabled: false }, access: [{ type: "wireguard", interface_name: accessIf, listen_port: 51822, max_peers: 1 }] } },
  });
  dir = makeTempDir("useraccess");
  // The user's tunnel lives across the tests below (set up in the second); it goes with the suite.
  registerCleanup("wg-quick down", async () => void (await nsExec(topo.node("user").ns, ["wg-quick", "down", join(dir, `${clientIf}.conf`)], { env: wgQuickEnv, reject: false })));
  const k = await wgKeys();
  userKey = { ...k, file: join(dir, "alice.key") };
  writeFileSync(userKey.file, `${k.priv}\n`, { mode: 0o600 });
});

describe("bridge user access (WireGuard)", () => {
  it("the bridge runs the access device with a kept key and announces it", async () => {
    await expect.poll(async () => ((await cp.client.capabilities(nodeId(br))).capabilities as { bridge?: Record<string, string> }).bridge?.user_access, { timeout: 60_000, interval: 1000 }).toBe("true");
    const caps = ((await cp.client.capabilities(nodeId(br))).capabilities as { bridge: Record<string, string> }).bridge;
    expect(caps.access_listen_port).toBe("51822");
    const dev = await wgShow(br.ns, accessIf);
    expect(dev.publicKey).toBe(caps.access_public_key);
    expect(dev.listenPort).toBe(51822);
    await expect.poll(async () => (await cp.client.heartbeats(nodeId(br))).at(-1)?.body, { timeout: 20_000, interval: 1000 }).toMatchObject({ user_access: { enabled: true, interface_name: accessIf, peer_count: 0, listen_port: 51822 } });
  });

  it("a wg-quick client from `plexd bridge user-config` reaches the node the policy allows, and not the other", async () => {
    await cp.client.setPolicies(nodeId(br), [{ id: "users", rules: [{ src: userAddr, dst: nodeId(a), action: "allow" }] }]);
    await cp.client.setUserAccessPeer(nodeId(br), userKey.pub, { allowed_ips: [`${userAddr}/32`], label: "alice" });
    await expect.poll(async () => (await accessPeers()).map((p) => [p.publicKey, p.allowedIps]), { timeout: 30_000, interval: 500 }).toEqual([[userKey.pub, [`${userAddr}/32`]]]);
    // The control plane routes replies back: the user's address is in the bridge's allowed IPs on a and b.
    await expect.poll(() => bridgePeerIps(a), { timeout: 30_000, interval: 1000 }).toContain(`${userAddr}/32`);
    await expect.poll(() => bridgePeerIps(b), { timeout: 30_000, interval: 1000 }).toContain(`${userAddr}/32`);

    const rendered = await br.plexd(["bridge", "user-config", "alice", "--private-key-file", userKey.file], { asRoot: true });
    expect(rendered.exitCode, rendered.output).toBe(0);
    const text = rendered.output;
    expect(text).toContain(`PrivateKey = ${userKey.priv}\n`);
    expect(text).toContain(`Address = ${userAddr}/32\n`);
    expect(text).toContain(`Endpoint = ${topo.node("br").ip}:51822\n`);
    expect(text).toContain("AllowedIPs = 10.100.0.0/16\n");
    // The same file as a QR code for the mobile apps (rendered by the qrcode library in the terminal).
    const qr = await br.plexd(["bridge", "user-config", "alice", "--qr"], { asRoot: true });
    expect(qr.exitCode, qr.output).toBe(0);
    expect(qr.output).toMatch(/[▀▄█]{10}/);
    expect(qr.output).toContain("the QR code holds a placeholder instead of the private key");
    // Only secrets-class callers get it (it would carry the PSK): the plexd user is refused.
    expect((await br.plexd(["bridge", "user-config", "alice"])).exitCode).toBe(5);

    // Plain wg-quick on the user's device, userspace WireGuard as everywhere on these machines.
    const conf = join(dir, `${clientIf}.conf`);
    writeFileSync(conf, text.slice(text.indexOf("# plexd user access")), { mode: 0o600 });
    await nsExec(topo.node("user").ns, ["wg-quick", "up", conf], { env: wgQuickEnv });

    const user = topo.node("user").ns;
    await expect.poll(async () => (await ping(user, meshIp(a), { count: 1, timeoutMs: 2000 })).ok, { timeout: 30_000, interval: 1000 }).toBe(true);
    expect((await ping(user, meshIp(b), { count: 3, timeoutMs: 2000 })).ok).toBe(false);
    // b itself would answer (policy allow): it is the bridge's forward chain that drops.
    expect((await ping(a.ns, meshIp(b), { count: 1, timeoutMs: 3000 })).ok).toBe(true);
    const rules = (await nftList(br.ns)).rules.filter((r) => r.table === "plexd" && r.chain === "plexd-bridge-fwd").map((r) => JSON.stringify(r.expr));
    expect(rules.at(-1)).toMatch(new RegExp(`"${accessIf}".*"drop"`));
    expect(rules.some((r) => r.includes(userAddr) && r.includes(meshIp(a)) && r.includes("accept"))).toBe(true);

    const listed = await br.plexd(["bridge", "users"]);
    expect(listed.output).toMatch(new RegExp(`alice\\s+\\S+\\s+${userAddr.replaceAll(".", "\\.")}/32\\s+${topo.node("user").ip.replaceAll(".", "\\.")}:\\d+\\s+\\d+s ago`));
    const st = await br.plexd(["status"]);
    expect(st.output).toMatch(new RegExp(`user_access\\s+running\\s+${accessIf} on UDP 51822, 1/1 peers`));
  });

  it("more users than max_peers, or a default-route address, are refused with reasons; alice keeps working", async () => {
    const bob = await wgKeys();
    const eve = await wgKeys();
    await cp.client.setUserAccessPeer(nodeId(br), bob.pub, { allowed_ips: ["10.100.250.3/32"], label: "bob" });
    await cp.client.setUserAccessPeer(nodeId(br), eve.pub, { allowed_ips: ["0.0.0.0/0"], label: "eve" });
    await expect.poll(async () => (await br.plexd(["bridge", "users"])).output, { timeout: 30_000, interval: 1000 }).toContain("refused eve: allowed_ips[0]: 0.0.0.0/0 is a default route");
    const out = (await br.plexd(["bridge", "users"])).output;
    expect(out).toContain("refused bob: max_peers (1) reached");
    expect(await br.agent!.waitForLine(/"label":"bob","reason":"max_peers \(1\) reached","msg":"user access peer refused"/, 5000)).toBeTruthy();
    expect((await accessPeers()).map((p) => p.publicKey)).toEqual([userKey.pub]);
    await expect.poll(async () => (await ping(topo.node("user").ns, meshIp(a), { count: 1, timeoutMs: 2000 })).ok, { timeout: 20_000, interval: 500 }).toBe(true);
    await cp.client.removeUserAccessPeer(nodeId(br), bob.pub);
    await cp.client.removeUserAccessPeer(nodeId(br), eve.pub);
  });

  it("revoking the user removes its peer and cuts it off", async () => {
    await cp.client.removeUserAccessPeer(nodeId(br), userKey.pub);
    await expect.poll(async () => (await accessPeers()).map((p) => p.publicKey), { timeout: 30_000, interval: 500 }).toEqual([]);
    expect((await ping(topo.node("user").ns, meshIp(a), { count: 2, timeoutMs: 2000 })).ok).toBe(false);
    await expect.poll(() => bridgePeerIps(a), { timeout: 30_000, interval: 1000 }).not.toContain(`${userAddr}/32`);
    const missing = await br.plexd(["bridge", "user-config", "alice"], { asRoot: true });
    expect(missing.exitCode).toBe(4);
    expect(missing.output).toContain('no user-access client "alice"');
  });

  it("an agent restart keeps the device key; enabled: false removes the device, its forwarding and rules", async () => {
    const key = (await wgShow(br.ns, accessIf)).publicKey;
    await br.agent?.kill("SIGTERM", { graceMs: 10_000 });
    br.startAgent();
    await br.agent!.waitForLine(/identity loaded/, 30_000);
    await br.agent!.waitForLine(/"msg":"bridge service started"/, 30_000);
    // The new process read the kept key (a new one would also replace the device's).
    expect((await br.plexd(["bridge", "users"])).output).toContain(`public key ${key}`);
    expect((await wgShow(br.ns, accessIf)).publicKey).toBe(key);

    await cp.client.setBridgeBlock(nodeId(br), "user_access_config", { enabled: false, peers: [] });
    await expect.poll(async () => (await wgShow(br.ns, accessIf).then(() => "present", () => "gone")), { timeout: 30_000, interval: 500 }).toBe("gone");
    await expect.poll(async () => (await nftList(br.ns)).rules.filter((r) => r.table === "plexd" && r.chain === "plexd-bridge-fwd").length, { timeout: 30_000, interval: 500 }).toBe(0);
    expect((await nsExec(br.ns, ["sysctl", "-n", `net.ipv4.conf.${br.iface}.forwarding`])).stdout.trim()).toBe("0");
    await expect.poll(async () => (await cp.client.heartbeats(nodeId(br))).at(-1)?.body, { timeout: 20_000, interval: 1000 }).toMatchObject({ user_access: { enabled: false, peer_count: 0 } });
  });
});
