// wireguard-go's UAPI: the codec, and exchanges with a daemon stand-in on a temp unix socket
// that answers the way wireguard-go does (an answer ends with an empty line).
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { wireGuardPublicKey as publicKeyOf } from "../../proto/lib/keys.js";
import { parseGet, renderSet, uapiBackend, uapiExchange } from "./uapi.js";

const b64 = (h: string) => Buffer.from(h, "hex").toString("base64");
// RFC 7748 section 6.1 (Alice)
const alicePriv = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const alicePub = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const peerHex = "11".repeat(32);
const pskHex = "22".repeat(32);
const zeroHex = "0".repeat(64);

const getReply = [
  `private_key=${alicePriv}`,
  "listen_port=51820",
  `public_key=${peerHex}`,
  `preshared_key=${pskHex}`,
  "protocol_version=1",
  "endpoint=[fd00::2]:51820",
  "last_handshake_time_sec=1700000000",
  "last_handshake_time_nsec=5",
  "tx_bytes=10",
  "rx_bytes=20",
  "persistent_keepalive_interval=25",
  "allowed_ip=10.100.0.3/32",
  "allowed_ip=10.100.0.2/32",
  `public_key=${"33".repeat(32)}`,
  `preshared_key=${zeroHex}`,
  "protocol_version=1",
  "last_handshake_time_sec=0",
  "last_handshake_time_nsec=0",
  "tx_bytes=0",
  "rx_bytes=0",
  "persistent_keepalive_interval=0",
  "allowed_ip=FD00:0::4/128",
  "allowed_ip=10.100.0.9/24",
  "errno=0",
  "",
  "",
].join("\n");

describe("UAPI codec", () => {
  it("derives the public key like WireGuard (RFC 7748 test vector)", () => {
    expect(publicKeyOf(b64(alicePriv))).toBe(b64(alicePub));
  });

  it("parses get: keys as base64, a zero PSK as none, allowed IPs re-parsed canonical and sorted", () => {
    const d = parseGet(getReply);
    expect(d).toMatchObject({ privateKey: b64(alicePriv), listenPort: 51820 });
    expect(d.peers).toEqual([
      { publicKey: b64(peerHex), presharedKey: b64(pskHex), endpoint: "[fd00::2]:51820", allowedIps: ["10.100.0.2/32", "10.100.0.3/32"], keepalive: 25, latestHandshake: 1700000000, rxBytes: 20n, txBytes: 10n },
      { publicKey: b64("33".repeat(32)), presharedKey: "", endpoint: "", allowedIps: ["10.100.0.0/24", "fd00::4/128"], keepalive: 0, latestHandshake: 0, rxBytes: 0n, txBytes: 0n },
    ]);
  });

  it("fwmark: read from get, and set (0 clears it) before any peer", () => {
    expect(parseGet("listen_port=1\nfwmark=51820\nerrno=0\n\n").fwmark).toBe(51820);
    expect(parseGet("listen_port=1\nerrno=0\n\n").fwmark).toBe(0);
    expect(renderSet({ fwmark: 51820, upsert: [], remove: [] })).toBe("set=1\nfwmark=51820\n\n");
    expect(renderSet({ listenPort: 2, fwmark: 0, upsert: [], remove: [] })).toBe("set=1\nlisten_port=2\nfwmark=0\n\n");
  });

  it("a device without a key, and an error answer", () => {
    expect(parseGet("listen_port=0\nerrno=0\n\n")).toMatchObject({ privateKey: "", listenPort: 0, peers: [] });
    expect(() => parseGet("errno=2\n\n")).toThrow(/errno 2/);
  });

  it("renders one set: device fields, then upserts, then removals (a request cut short leaves a superset)", () => {
    const text = renderSet({
      privateKey: b64(alicePriv),
      listenPort: 51821,
      remove: [b64("44".repeat(32))],
      upsert: [
        { publicKey: b64(peerHex), presharedKey: "", endpoint: "[fd00::1]:5", allowedIps: ["10.0.0.0/8", "fd00::/64"], keepalive: 0 },
        { publicKey: b64("55".repeat(32)), presharedKey: b64(pskHex), endpoint: "", allowedIps: [], keepalive: 25 },
      ],
    });
    expect(text).toBe(
      [
        "set=1",
        `private_key=${alicePriv}`,
        "listen_port=51821",
        `public_key=${peerHex}`,
        `preshared_key=${zeroHex}`,
        "endpoint=[fd00::1]:5",
        "persistent_keepalive_interval=0",
        "replace_allowed_ips=true",
        "allowed_ip=10.0.0.0/8",
        "allowed_ip=fd00::/64",
        `public_key=${"55".repeat(32)}`,
        `preshared_key=${pskHex}`,
        "persistent_keepalive_interval=25",
        "replace_allowed_ips=true",
        `public_key=${"44".repeat(32)}`,
        "remove=true",
        "",
        "",
      ].join("\n"),
    );
  });

  it("an empty change is a set with nothing in it", () => {
    expect(renderSet({ upsert: [], remove: [] })).toBe("set=1\n\n");
  });
});

/** A wireguard-go stand-in: how it treats each connection is up to the test. */
describe("over a socket", () => {
  let dir: string;
  let server: Server;
  let connections = 0;
  const received: string[] = [];
  let answer: (request: string, c: Socket) => void = () => undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "plexd-uapi-"));
    server = createServer((c) => {
      connections++;
      let buf = "";
      c.setEncoding("utf8");
      c.on("error", () => undefined);
      c.on("data", (d: string) => {
        buf += d;
        if (!buf.endsWith("\n\n")) return;
        received.push(buf);
        answer(buf, c);
      });
    });
    await new Promise<void>((r) => server.listen(join(dir, "plexd0.sock"), r));
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    connections = 0;
    received.length = 0;
    answer = (req, c) => void c.end(req.startsWith("get=1") ? getReply : "errno=0\n\n");
  });

  const sock = () => join(dir, "plexd0.sock");
  const backend = () => uapiBackend((i) => join(dir, `${i}.sock`));

  it("one connection per exchange, the answer up to its empty line", async () => {
    answer = (req, c) => void c.write(req.startsWith("get=1") ? getReply : "errno=0\n\n"); // a daemon that keeps the connection open
    expect(await uapiExchange(sock(), "get=1\n\n")).toBe(getReply);
    expect(await uapiExchange(sock(), "set=1\nlisten_port=1\n\n")).toBe("errno=0\n\n");
    expect(connections).toBe(2);
  });

  it("an answer arriving in pieces is put together", async () => {
    answer = (_req, c) => {
      for (let i = 0; i < getReply.length; i += 7) c.write(getReply.slice(i, i + 7));
      c.end();
    };
    expect(await uapiExchange(sock(), "get=1\n\n")).toBe(getReply);
  });

  it("an answer cut short is unavailable; silence is deadline_exceeded; a cancelled call is cancelled", async () => {
    answer = (_req, c) => void c.end("errno=");
    await expect(uapiExchange(sock(), "get=1\n\n")).rejects.toMatchObject({ code: "unavailable" });
    answer = () => undefined;
    await expect(uapiExchange(sock(), "get=1\n\n", undefined, 50)).rejects.toMatchObject({ code: "deadline_exceeded" });
    const ac = new AbortController();
    const pending = uapiExchange(sock(), "get=1\n\n", ac.signal);
    setTimeout(() => ac.abort(), 20);
    await expect(pending).rejects.toMatchObject({ code: "cancelled" });
  });

  it("no socket: not_found", async () => {
    await expect(uapiExchange(join(dir, "none.sock"), "get=1\n\n")).rejects.toMatchObject({ code: "not_found" });
  });

  it("show reads the device; a device without a daemon is no device", async () => {
    const dev = await backend().show("plexd0");
    expect(dev?.privateKey).toBe(b64(alicePriv));
    expect(dev?.peers).toHaveLength(2);
    expect(received).toEqual(["get=1\n\n"]);
    await expect(backend().show("plexd9")).resolves.toBeUndefined();
  });

  it("show fails on a daemon error (not mistaken for a missing device)", async () => {
    answer = (_req, c) => void c.end("errno=5\n\n");
    await expect(backend().show("plexd0")).rejects.toMatchObject({ code: "internal" });
  });

  it("apply sends exactly the rendered set and checks errno", async () => {
    const change = { upsert: [], remove: [b64(peerHex)] };
    await backend().apply("plexd0", change, { privateKey: "", listenPort: 0, peers: [] });
    expect(received).toEqual([renderSet(change)]);
    answer = (_req, c) => void c.end("errno=22\n\n");
    await expect(backend().apply("plexd0", { upsert: [], remove: [], listenPort: 1 }, { privateKey: "", listenPort: 0, peers: [] })).rejects.toMatchObject({ code: "internal", message: expect.stringContaining("errno 22") });
    answer = (_req, c) => void c.end("\n\n");
    await expect(backend().apply("plexd0", { upsert: [], remove: [], listenPort: 1 }, { privateKey: "", listenPort: 0, peers: [] })).rejects.toMatchObject({ code: "internal", message: expect.stringContaining("errno missing") });
  });
});
