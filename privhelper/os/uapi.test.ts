import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetParser, UapiConnection, parseGet, publicKeyOf, renderSet, uapiBackend } from "./uapi.js";

const b64 = (h: string) => Buffer.from(h, "hex").toString("base64");
// RFC 7748 section 6.1 (Alice)
const alicePriv = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const alicePub = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const peerHex = "11".repeat(32);
const pskHex = "22".repeat(32);

const getReply = [
  `private_key=${alicePriv}`,
  "listen_port=51820",
  `public_key=${peerHex}`,
  `preshared_key=${pskHex}`,
  "protocol_version=1",
  "endpoint=192.0.2.2:51820",
  "last_handshake_time_sec=1700000000",
  "last_handshake_time_nsec=5",
  "tx_bytes=10",
  "rx_bytes=20",
  "persistent_keepalive_interval=25",
  "allowed_ip=10.100.0.3/32",
  "allowed_ip=10.100.0.2/32",
  `public_key=${"33".repeat(32)}`,
  `preshared_key=${"0".repeat(64)}`,
  "persistent_keepalive_interval=0",
  "errno=0",
  "",
  "",
].join("\n");

describe("UAPI codec", () => {
  it("derives the public key like WireGuard", () => {
    expect(publicKeyOf(b64(alicePriv))).toBe(b64(alicePub));
  });

  it("parses get", () => {
    const d = parseGet(getReply);
    expect(d).toMatchObject({ privateKey: b64(alicePriv), publicKey: b64(alicePub), listenPort: 51820 });
    expect(d.peers).toEqual([
      { publicKey: b64(peerHex), presharedKey: b64(pskHex), endpoint: "192.0.2.2:51820", allowedIps: ["10.100.0.2/32", "10.100.0.3/32"], keepalive: 25, latestHandshake: 1700000000, rxBytes: 20n, txBytes: 10n },
      { publicKey: b64("33".repeat(32)), presharedKey: "", endpoint: "", allowedIps: [], keepalive: 0, latestHandshake: 0, rxBytes: 0n, txBytes: 0n },
    ]);
    expect(() => parseGet("errno=2\n\n")).toThrow(/errno 2/);
  });

  it("parses the same whatever chunks the answer arrives in", () => {
    const text = getReply + "\n\n";
    const whole = parseGet(text);
    for (const size of [1, 7, 64, 1000]) {
      const p = new GetParser();
      for (let i = 0; i < text.length; i += size) p.push(text.slice(i, i + size));
      expect(p.finish()).toEqual(whole);
    }
    const bad = new GetParser();
    bad.push("errno=");
    expect(() => bad.push("1\n\n")).toThrow(/errno 1/);
  });

  it("renders one incremental set transaction, removals included", () => {
    const text = renderSet({
      listenPort: 51821,
      remove: [b64("44".repeat(32))],
      upsert: [{ publicKey: b64(peerHex), presharedKey: "", endpoint: "[fd00::1]:5", allowedIps: ["10.0.0.0/8", "fd00::/64"], keepalive: 0 }],
    });
    expect(text).toBe(
      [
        "set=1",
        "listen_port=51821",
        `public_key=${"44".repeat(32)}`,
        "remove=true",
        `public_key=${peerHex}`,
        `preshared_key=${"0".repeat(64)}`,
        "endpoint=[fd00::1]:5",
        "persistent_keepalive_interval=0",
        "replace_allowed_ips=true",
        "allowed_ip=10.0.0.0/8",
        "allowed_ip=fd00::/64",
        "",
        "",
      ].join("\n"),
    );
  });
});

describe("uapiBackend over a socket", () => {
  let dir: string;
  let server: Server;
  const received: string[] = [];
  let setErrno = "0";

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "plexd-uapi-"));
    server = createServer((c) => {
      let buf = "";
      c.setEncoding("utf8");
      c.on("data", (d: string) => {
        buf += d;
        if (!buf.endsWith("\n\n")) return;
        received.push(buf);
        c.end(buf.startsWith("get=1") ? getReply : `errno=${setErrno}\n\n`);
      });
    });
    await new Promise<void>((r) => server.listen(join(dir, "plexd0.sock"), r));
  });
  afterAll(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  const backend = () => uapiBackend((i) => join(dir, `${i}.sock`));

  it("reads and writes through the socket", async () => {
    const dev = await backend().show("plexd0");
    expect(dev?.peers).toHaveLength(2);
    await backend().apply("plexd0", { upsert: [], remove: [b64(peerHex)] }, { privateKey: "", listenPort: 0, peers: [] });
    expect(received.at(-1)).toBe(`set=1\npublic_key=${peerHex}\nremove=true\n\n`);
  });

  it("fails an apply the daemon refuses, and reports an absent daemon as no device", async () => {
    setErrno = "22";
    await expect(backend().apply("plexd0", { upsert: [], remove: [], listenPort: 1 }, { privateKey: "", listenPort: 0, peers: [] })).rejects.toMatchObject({ code: "internal" });
    await expect(backend().show("plexd9")).resolves.toBeUndefined();
  });
});

describe("UapiConnection", () => {
  let dir: string;
  let server: Server;
  let connections = 0;
  /** How the fake daemon treats a connection after answering: keep it, close it, or die mid-answer. */
  let mode: "keep" | "close" | "cut" = "keep";

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "plexd-uapi-conn-"));
    server = createServer((c) => {
      connections++;
      let buf = "";
      c.setEncoding("utf8");
      c.on("data", (d: string) => {
        if (c.writableEnded) return; // what a client sends after we hung up is never read
        buf += d;
        while (buf.includes("\n\n")) {
          const op = buf.slice(0, buf.indexOf("\n\n"));
          buf = buf.slice(op.length + 2);
          if (mode === "cut") {
            c.end("errno=");
            return;
          }
          c.write(op === "get=1" ? getReply : "errno=0\n\n");
          if (mode === "close") {
            c.end();
            return;
          }
        }
      });
    });
    await new Promise<void>((r) => server.listen(join(dir, "plexd0.sock"), r));
  });
  afterAll(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("answers several operations over one kept connection, one at a time", async () => {
    mode = "keep";
    connections = 0;
    const conn = new UapiConnection(join(dir, "plexd0.sock"));
    const answers = await Promise.all([conn.exchange("get=1\n\n"), conn.exchange("set=1\nlisten_port=1\n\n"), conn.exchange("get=1\n\n")]);
    expect(answers.map((a) => a.slice(-10))).toEqual([getReply.slice(-10), "errno=0\n\n".slice(-10), getReply.slice(-10)]);
    expect(connections).toBe(1);
    conn.close();
  });

  it("replaces a kept connection the daemon closed, and sends the operation again", async () => {
    mode = "close";
    connections = 0;
    const conn = new UapiConnection(join(dir, "plexd0.sock"));
    expect(await conn.exchange("set=1\nlisten_port=1\n\n")).toBe("errno=0\n\n");
    expect(await conn.exchange("set=1\nlisten_port=2\n\n")).toBe("errno=0\n\n");
    expect(connections).toBe(2);
    conn.close();
  });

  it("fails, without a second try, an answer cut off half-way", async () => {
    mode = "cut";
    connections = 0;
    const conn = new UapiConnection(join(dir, "plexd0.sock"));
    await expect(conn.exchange("get=1\n\n")).rejects.toMatchObject({ code: "unavailable" });
    expect(connections).toBe(1);
    mode = "keep";
    expect(await conn.exchange("get=1\n\n")).toBe(getReply);
    conn.close();
  });
});
