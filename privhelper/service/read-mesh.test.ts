import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ReadMeshRequestSchema, WireGuardImpl } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { dump, ipRead, key, wgShow } from "../../test/support/privhelper.js";
import { TranscriptRunner, type TranscriptEntry } from "../../test/support/transcript.js";
import { privConfigFrom } from "../config.js";
import { ipTool } from "../os/ip.js";
import { wireGuardPublicKey as publicKeyOf } from "../../proto/lib/keys.js";
import { wgTool, type WgBackend } from "../os/wg.js";
import { makeReadMesh } from "./read-mesh.js";

const [priv, pub, a, psk] = [key(1), key(2), key(3), key(5)];
const ctx = { signal: new AbortController().signal, uid: 1001, pid: 4242 };
const config = privConfigFrom({ mesh: { interface: "plexd0" } });

function reader(transcript: TranscriptEntry[], wg?: WgBackend) {
  const runner = new TranscriptRunner(transcript);
  return { runner, read: makeReadMesh({ ip: ipTool(runner, 51820), wgFor: () => Promise.resolve(wg ?? wgTool(runner, "/nonexistent")), config }) };
}

describe("ReadMesh", () => {
  it("reports a kernel device with its peers; a PSK only as its sha256, never the key", async () => {
    const text = dump({ privateKey: priv, publicKey: pub, listenPort: 51820, peers: [{ publicKey: a, psk, endpoint: "192.0.2.3:51820", allowedIps: ["10.100.0.3/32"], handshake: 1_700_000_000, rx: 5, tx: 6, keepalive: 25 }] });
    const { runner, read } = reader([ipRead("plexd0", { up: true, mtu: 1420, addrs: ["10.100.0.1/32"] }), wgShow("plexd0", text)]);
    const res = await read(create(ReadMeshRequestSchema), ctx);
    expect(runner.ran.every((r) => r.signal)).toBe(true);
    expect(res).toMatchObject({ exists: true, up: true, interface: "plexd0", publicKey: pub, listenPort: 51820, addresses: ["10.100.0.1/32"], mtu: 1420, implementation: WireGuardImpl.KERNEL });
    const peer = res.peers![0]!;
    expect(peer).toMatchObject({ publicKey: a, endpoint: "192.0.2.3:51820", allowedIps: ["10.100.0.3/32"], rxBytes: 5n, txBytes: 6n, persistentKeepalive: 25 });
    expect(peer.pskSha256).toBe(createHash("sha256").update(Buffer.alloc(32, 5)).digest("hex"));
    expect(timestampDate(peer.lastHandshake as never).getTime()).toBe(1_700_000_000_000);
    expect(JSON.stringify(res, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).not.toContain(psk);
    expect(JSON.stringify(res, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).not.toContain(priv);
  });

  it("a wireguard-go device: its public key derived from the private key UAPI returns", async () => {
    const uapi: WgBackend = { show: () => Promise.resolve({ privateKey: priv, publicKey: "", listenPort: 51820, peers: [{ publicKey: a, presharedKey: "", endpoint: "", allowedIps: [], keepalive: 0, latestHandshake: 0, rxBytes: 0n, txBytes: 0n }] }), apply: () => Promise.reject(new Error("read only")) };
    const { read } = reader([ipRead("plexd0", { kind: "tun", up: true, mtu: 1420, addrs: [] })], uapi);
    const res = await read(create(ReadMeshRequestSchema, { interface: "plexd0" }), ctx);
    expect(res).toMatchObject({ implementation: WireGuardImpl.USERSPACE, publicKey: publicKeyOf(priv) });
    expect(res.peers![0]).toMatchObject({ pskSha256: "" });
    expect(res.peers![0]!.lastHandshake).toBeUndefined();
  });

  it("no device; a link that is not WireGuard; an interface off the allow-list is refused unread", async () => {
    const { read } = reader([ipRead("plexd0", undefined), wgShow("plexd0", undefined), ipRead("plexd0", { kind: "veth", up: false, mtu: 1500, addrs: [] }), wgShow("plexd0", undefined)]);
    expect(await read(create(ReadMeshRequestSchema), ctx)).toEqual({ exists: false, interface: "plexd0" });
    expect(await read(create(ReadMeshRequestSchema), ctx)).toMatchObject({ exists: true, up: false, implementation: WireGuardImpl.NONE, publicKey: "", peers: [] });
    const off = reader([]);
    await expect(off.read(create(ReadMeshRequestSchema, { interface: "eth0" }), ctx)).rejects.toMatchObject({ code: "invalid_argument" });
    expect(off.runner.ran).toEqual([]);
  });
});
