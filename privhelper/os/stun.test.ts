// The OS half of StunProbe: one UDP exchange (on loopback only), and the short-lived SNAT table.
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TranscriptRunner, fail, ok } from "../../test/support/transcript.js";
import { removeStrayStunSnat, renderStunSnat, setStunSnat, stunTable, udpExchange } from "./stun.js";

describe("udpExchange (loopback)", () => {
  let server: UdpSocket;
  let port = 0;
  const seen: { at: number; from: number }[] = [];
  let silent = false;
  beforeAll(async () => {
    server = createSocket("udp4");
    server.on("message", (msg, rinfo) => {
      seen.push({ at: Date.now(), from: rinfo.port });
      if (!silent) server.send(Buffer.concat([Buffer.from("re:"), msg]), rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => server.bind(0, "127.0.0.1", r));
    port = server.address().port;
  });
  afterAll(() => {
    server.close();
  });

  it("binds, connects, lets the caller act on its local address before anything is sent, returns the reply", async () => {
    seen.length = 0;
    silent = false;
    let before: { address: string; port: number; at: number } | undefined;
    const r = await udpExchange({
      ip: "127.0.0.1",
      port,
      request: Buffer.from("ping"),
      timeoutMs: 2_000,
      beforeSend: async (local) => {
        await new Promise((res) => setTimeout(res, 30));
        before = { ...local, at: Date.now() };
      },
    });
    expect(r.reply.toString()).toBe("re:ping");
    expect(before?.address).toBe("127.0.0.1");
    expect(r.localPort).toBe(before?.port);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.from).toBe(r.localPort);
    expect(seen[0]!.at).toBeGreaterThanOrEqual(before!.at);
  });

  it("a taken local port is already_exists", async () => {
    const holder = createSocket("udp4");
    await new Promise<void>((r) => holder.bind({ port: 0, exclusive: true }, r));
    try {
      await expect(udpExchange({ ip: "127.0.0.1", port, request: Buffer.from("x"), timeoutMs: 1_000, bindPort: holder.address().port })).rejects.toMatchObject({ code: "already_exists" });
    } finally {
      holder.close();
    }
  });

  it("silence is deadline_exceeded, a cancel is cancelled, a closed port answers at once", async () => {
    silent = true;
    await expect(udpExchange({ ip: "127.0.0.1", port, request: Buffer.from("x"), timeoutMs: 50 })).rejects.toMatchObject({ code: "deadline_exceeded" });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    await expect(udpExchange({ ip: "127.0.0.1", port, request: Buffer.from("x"), timeoutMs: 5_000, signal: ac.signal })).rejects.toMatchObject({ code: "cancelled" });
    silent = false;
    // ICMP port unreachable ends the wait long before the timeout.
    const closed = createSocket("udp4");
    await new Promise<void>((r) => closed.bind(0, "127.0.0.1", r));
    const dead = closed.address().port;
    closed.close();
    const started = Date.now();
    await expect(udpExchange({ ip: "127.0.0.1", port: dead, request: Buffer.from("x"), timeoutMs: 5_000 })).rejects.toMatchObject({ code: "unavailable" });
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe("the SNAT table", () => {
  const s = { localIp: "198.18.1.2", localPort: 61234, server: "192.0.2.1", serverPort: 3478, meshPort: 51820 };

  it("replaces any leftover table in the same transaction and matches only this socket's datagrams to this server", () => {
    expect(renderStunSnat(s)).toBe(
      `table ip ${stunTable}\ndelete table ip ${stunTable}\ntable ip ${stunTable} {\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n` +
        "    ip saddr 198.18.1.2 ip daddr 192.0.2.1 udp sport 61234 udp dport 3478 snat to 198.18.1.2:51820\n  }\n}\n",
    );
  });

  it("set and remove are one `nft -f -` each, script on stdin, not cancellable", async () => {
    const runner = new TranscriptRunner([
      { cmd: ["nft", "-f", "-"], input: renderStunSnat(s), result: ok() },
      { cmd: ["nft", "-f", "-"], input: "table ip plexd_stun\ndelete table ip plexd_stun\n", result: ok() },
    ]);
    await setStunSnat(runner, s);
    await setStunSnat(runner, undefined);
    expect(runner.done).toBe(true);
    expect(runner.ran.every((r) => !r.signal)).toBe(true);
  });

  it("a stray table is looked up first and only removed when there", async () => {
    const runner = new TranscriptRunner([
      { cmd: ["nft", "list", "table", "ip", "plexd_stun"], result: fail("Error: No such file or directory\n") },
      { cmd: ["nft", "list", "table", "ip", "plexd_stun"], result: ok("table ip plexd_stun {\n}\n") },
      { cmd: ["nft", "delete", "table", "ip", "plexd_stun"], result: ok() },
    ]);
    expect(await removeStrayStunSnat(runner)).toBe(false);
    expect(await removeStrayStunSnat(runner)).toBe(true);
    expect(runner.done).toBe(true);
  });
});
