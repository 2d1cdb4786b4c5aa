import { execFileSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { buildBindingRequest, decodeBindingResponse, parseBindingResponse } from "../../agent/nat/stun.js";
import { connectPrivhelper, type PrivClient } from "../../agent/privclient/client.js";
import { startStunResponder } from "../../mockcp/server/stun.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { createTopology, ensureSystemUsers, nsExec, useHarness, type Topology } from "../e2e/harness/vitest.js";
import { startStunServer, stunPort } from "../e2e/lib/cp.js";
import { createNode, type PlexdNode } from "../e2e/lib/node.js";
import { ensureBuilt } from "../e2e/privhelper-util.js";

// The agent's STUN client and privhelper's StunProbe against a STUN server nobody here wrote:
// Debian's stund (package stun-server) in a namespace of this test. The client namespace
// reaches it over a veth bridge; nothing leaves the topology.

useHarness();

let topo: Topology;
let node: PlexdNode;
let priv: PrivClient;
let clientIp: string;
const server = () => ({ ip: topo.hub.ip, port: stunPort });

// Sends hex bytes from an ephemeral UDP port inside the namespace and prints the reply as hex
// plus the local port: the transport only, the agent's code builds and parses.
const SEND_SCRIPT = `
const dgram = require("node:dgram");
const [ip, port, hex] = process.argv.slice(1);
const s = dgram.createSocket("udp4");
const t = setTimeout(() => { process.stdout.write(JSON.stringify({ timeout: true })); process.exit(0); }, 3000);
s.on("message", (m) => { clearTimeout(t); process.stdout.write(JSON.stringify({ reply: m.toString("hex"), port: s.address().port })); process.exit(0); });
s.bind(0, () => s.send(Buffer.from(hex, "hex"), Number(port), ip));
`;

beforeAll(async () => {
  await ensureBuilt();
  const users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["client"] });
  clientIp = topo.node("client").ip;
  await startStunServer(topo);
  node = createNode({ name: `stun${process.pid % 1000}`, ns: topo.node("client").ns, api: `https://${topo.hub.ip}:8443`, caFile: "/nonexistent/ca.pem", users });
  await node.startPrivhelper();
  priv = connectPrivhelper({ socketPath: node.privSocket });
  await priv.waitReady({ timeoutMs: 10_000 });
});

afterAll(() => priv?.close());

describe("STUN interop with Debian's stund", () => {
  // No WireGuard device unless the test makes one: whether a probe can share the mesh port
  // depends on it.
  beforeEach(async () => {
    await priv.teardown({}, { timeoutMs: 30_000 });
  });

  it("the agent's Binding request is answered with the client's own address", async () => {
    const req = buildBindingRequest();
    const r = await nsExec(topo.node("client").ns, [process.execPath, "-e", SEND_SCRIPT, server().ip, String(server().port), req.bytes.toString("hex")], { timeoutMs: 10_000 });
    const out = JSON.parse(r.stdout) as { reply?: string; port?: number; timeout?: boolean };
    expect(out.timeout).toBeUndefined();
    const res = decodeBindingResponse(Buffer.from(out.reply!, "hex"), req.txid);
    expect(res.mapped).toEqual({ family: 4, ip: clientIp, port: out.port });
    // A reply to someone else's transaction is refused.
    expect(parseBindingResponse(Buffer.from(out.reply!, "hex"), buildBindingRequest().txid)).toMatchObject({ ok: false, reason: "txid_mismatch" });
  });

  it("StunProbe without a WireGuard device probes from an ephemeral port (from_mesh_port=false)", async () => {
    const req = buildBindingRequest();
    const r = await priv.stunProbe({ ...server(), request: req.bytes, timeoutMs: 3000 }, { timeoutMs: 15_000 });
    expect(r.fromMeshPort).toBe(false);
    expect(r.sourcePort).not.toBe(51820);
    expect(decodeBindingResponse(r.reply, req.txid).mapped).toEqual({ family: 4, ip: clientIp, port: r.sourcePort });
  });

  it("StunProbe shares the WireGuard port: stund sees <client>:51820 while wireguard-go keeps owning it", async () => {
    const privateKey = execFileSync("wg", ["genkey"]).toString().trim();
    const applied = await priv.applyMesh({ spec: { interface: node.iface, privateKey, listenPort: 51820, addresses: ["10.100.77.1/16"], peers: [] } }, { timeoutMs: 30_000 });
    expect(applied.result?.error ?? "").toBe("");
    const ns = topo.node("client").ns;
    // Three probes in a row: the second and third reuse the conntrack binding of the first.
    for (let i = 0; i < 3; i++) {
      const req = buildBindingRequest();
      const r = await priv.stunProbe({ ...server(), request: req.bytes, timeoutMs: 3000 }, { timeoutMs: 15_000 });
      expect({ fromMeshPort: r.fromMeshPort, sourcePort: r.sourcePort }).toEqual({ fromMeshPort: true, sourcePort: 51820 });
      expect(decodeBindingResponse(r.reply, req.txid).mapped).toEqual({ family: 4, ip: clientIp, port: 51820 });
    }
    // The per-probe table is gone again, and the port is still WireGuard's.
    expect((await nsExec(ns, ["nft", "list", "tables"])).stdout).not.toContain("plexd_stun");
    const ss = (await nsExec(ns, ["ss", "-Hulnp", "sport", "= :51820"])).stdout;
    expect(ss).toContain("wireguard-go");
    const wgPort = (await nsExec(ns, ["wg", "show", node.iface, "listen-port"])).stdout.trim();
    expect(wgPort).toBe("51820");
  });

  it("StunProbe refuses anything but a Binding request, before sending", async () => {
    const err = await priv.stunProbe({ ...server(), request: Buffer.from("GET / HTTP/1.1\r\n\r\n....."), timeoutMs: 1000 }).catch((e: unknown) => PlexdError.from(e));
    expect(err).toMatchObject({ code: "invalid_argument" });
    const bad = await priv.stunProbe({ ip: "224.0.0.251", port: 5353, request: buildBindingRequest().bytes, timeoutMs: 1000 }).catch((e: unknown) => PlexdError.from(e));
    expect(bad).toMatchObject({ code: "invalid_argument" });
  });

  it("a silent server is deadline_exceeded within the timeout (plus the fallback's)", async () => {
    const t0 = Date.now();
    const err = await priv.stunProbe({ ip: topo.hub.ip, port: 3999, request: buildBindingRequest().bytes, timeoutMs: 500 }, { timeoutMs: 10_000 }).catch((e: unknown) => PlexdError.from(e));
    // Port 3999 is closed: the ICMP port-unreachable ends the wait early or the timer does.
    expect(["deadline_exceeded", "unavailable", "unknown"]).toContain((err as PlexdError).code);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe("the agent's STUN client against mockcp's responder (loopback)", () => {
  it("decodes mockcp's XOR-MAPPED-ADDRESS as the sender's address", async () => {
    const responder = await startStunResponder({ host: "127.0.0.1", port: 0 });
    const sock = createSocket("udp4");
    try {
      await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
      const req = buildBindingRequest();
      const reply = new Promise<Buffer>((r) => sock.once("message", (m) => r(m)));
      sock.send(req.bytes, Number(responder.address.split(":")[1]), "127.0.0.1");
      const res = decodeBindingResponse(await reply, req.txid);
      expect(res).toEqual({ mapped: { family: 4, ip: "127.0.0.1", port: sock.address().port }, source: "xor-mapped-address", unknownComprehensionRequired: [] });
    } finally {
      sock.close();
      await responder.close();
    }
  });
});
