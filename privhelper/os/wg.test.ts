// The `wg` tool for kernel devices: `wg show dump` read back, the config format rendered, and
// writes through a FIFO so keys are never in argv nor on disk.
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { dump, key, wgConf, wgShow, zeroKey } from "../../test/support/privhelper.js";
import { TranscriptRunner, fail } from "../../test/support/transcript.js";
import { parseDump, renderChange, renderConfig, wgTool, type WgPeer } from "./wg.js";

const [priv, pub, a, b, psk] = [key(1), key(2), key(3), key(4), key(5)];
const peerA: WgPeer = { publicKey: a, presharedKey: psk, endpoint: "192.0.2.3:51820", allowedIps: ["10.100.0.3/32", "fd00::3/128"], keepalive: 25 };
const peerB: WgPeer = { publicKey: b, presharedKey: "", endpoint: "", allowedIps: ["10.100.0.4/32"], keepalive: 0 };

describe("parseDump", () => {
  it("reads the interface line and every peer; (none) and off mean empty and 0", () => {
    const text = dump({
      privateKey: priv,
      publicKey: pub,
      listenPort: 51820,
      peers: [
        { publicKey: a, psk, endpoint: "[fd00::9]:4000", allowedIps: ["fd00::3/128", "10.100.0.3/32"], handshake: 1_700_000_000, rx: 20, tx: 10, keepalive: 25 },
        { publicKey: b },
      ],
    });
    expect(parseDump(text)).toEqual({
      privateKey: priv,
      publicKey: pub,
      listenPort: 51820,
      fwmark: 0,
      peers: [
        { publicKey: a, presharedKey: psk, endpoint: "[fd00::9]:4000", allowedIps: ["10.100.0.3/32", "fd00::3/128"], latestHandshake: 1_700_000_000, rxBytes: 20n, txBytes: 10n, keepalive: 25 },
        { publicKey: b, presharedKey: "", endpoint: "", allowedIps: [], latestHandshake: 0, rxBytes: 0n, txBytes: 0n, keepalive: 0 },
      ],
    });
  });

  it("a device without a key yet", () => {
    expect(parseDump("(none)\t(none)\t0\toff\n")).toEqual({ privateKey: "", publicKey: "", listenPort: 0, fwmark: 0, peers: [] });
    // `wg show dump` prints a set fwmark in hex.
    expect(parseDump("(none)\t(none)\t0\t0xca6c\n").fwmark).toBe(51820);
  });
});

describe("renderConfig / renderChange", () => {
  const want = { privateKey: priv, listenPort: 51820, peers: [peerA, peerB] };

  it("upserts go through addconf with only the changed device fields and peers; a missing PSK is the zero key", () => {
    const { mode, config } = renderChange({ listenPort: 51821, upsert: [peerB], remove: [] }, want);
    expect(mode).toBe("addconf");
    expect(config).toBe(["[Interface]", "ListenPort = 51821", "[Peer]", `PublicKey = ${b}`, `PresharedKey = ${zeroKey}`, "AllowedIPs = 10.100.0.4/32", "PersistentKeepalive = off", ""].join("\n"));
  });

  it("removals restate the whole desired device through syncconf (the format cannot remove one peer)", () => {
    const { mode, config } = renderChange({ upsert: [], remove: [key(9)] }, want);
    expect(mode).toBe("syncconf");
    expect(config).toBe(
      [
        "[Interface]",
        `PrivateKey = ${priv}`,
        "ListenPort = 51820",
        "FwMark = off",
        "[Peer]",
        `PublicKey = ${a}`,
        `PresharedKey = ${psk}`,
        "Endpoint = 192.0.2.3:51820",
        "AllowedIPs = 10.100.0.3/32, fd00::3/128",
        "PersistentKeepalive = 25",
        "[Peer]",
        `PublicKey = ${b}`,
        `PresharedKey = ${zeroKey}`,
        "AllowedIPs = 10.100.0.4/32",
        "PersistentKeepalive = off",
        "",
      ].join("\n"),
    );
    expect(config).not.toContain(key(9));
  });

  // wg(8) refuses a key without a value: `AllowedIPs =` is "Line unrecognized: `AllowedIPs='"
  // followed by "Configuration parsing error" (checked with wireguard-tools 1.0.20210914).
  // Validation accepts a peer with no allowed IPs (and WireGuard holds such peers), so on a
  // kernel device any addconf naming one, and any syncconf (removal or rollback) of a device
  // holding one, fails. The UAPI path renders no allowed_ip line and works.
  it("a peer with no allowed IPs renders an empty `AllowedIPs =` line, which wg refuses", () => {
    const config = renderConfig({}, [{ ...peerB, allowedIps: [] }]);
    expect(config).not.toMatch(/^AllowedIPs =\s*$/m);
  });
});

const wgPresent = await promisify(execFile)("wg", ["--version"]).then(
  () => true,
  () => false,
);

describe.skipIf(!wgPresent)("rendered configs against the real wg parser", () => {
  // `wg addconf` parses the whole file before it talks to the kernel, so a device that does not
  // exist tells an accepted config ("Unable to modify interface: ...") from a refused one
  // ("Configuration parsing error"). The dummy keys of this test may sit in a temp file.
  it.each([
    ["a whole device", renderConfig({ privateKey: priv, listenPort: 51820 }, [peerA, peerB])],
    ["device fields only", renderConfig({ listenPort: 1 }, [])],
    ["an IPv6 endpoint, keepalive off, a cleared PSK", renderConfig({}, [{ ...peerA, presharedKey: "", endpoint: "[fd00::1]:5", keepalive: 0 }])],
  ])("wg parses %s", async (_name, config) => {
    const dir = await mkdtemp(join(tmpdir(), "plexd-wgparse-"));
    try {
      await writeFile(join(dir, "c.conf"), config, { mode: 0o600 });
      const stderr = await new Promise<string>((resolve) => execFile("wg", ["addconf", "plexdnonexist0", join(dir, "c.conf")], (_err, _out, err) => resolve(err)));
      expect(stderr).toMatch(/^Unable to modify interface/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("wgTool", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "plexd-wg-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("show: `wg show NAME dump` with the caller's signal; no device is undefined", async () => {
    const text = dump({ privateKey: priv, publicKey: pub, listenPort: 51820, peers: [{ publicKey: a, allowedIps: ["10.100.0.3/32"] }] });
    const runner = new TranscriptRunner([wgShow("plexd0", text), wgShow("plexd0", undefined)]);
    const wg = wgTool(runner, dir);
    expect((await wg.show("plexd0", new AbortController().signal))?.peers.map((p) => p.publicKey)).toEqual([a]);
    expect(await wg.show("plexd0")).toBeUndefined();
    expect(runner.ran.map((r) => r.signal)).toEqual([true, false]);
  });

  it("apply writes the config through a FIFO of its own: keys only on the FIFO, never in argv, no file left", async () => {
    const want = { privateKey: priv, listenPort: 51820, peers: [peerA] };
    const config = renderConfig({ privateKey: priv, listenPort: 51820 }, [peerA]);
    const runner = new TranscriptRunner(wgConf(dir, "addconf", "plexd0", config));
    await wgTool(runner, dir).apply("plexd0", { privateKey: priv, listenPort: 51820, upsert: [peerA], remove: [] }, want);
    expect(runner.done).toBe(true);
    expect(runner.ran[1]?.input).toBe(config);
    for (const r of runner.ran) {
      expect(r.cmd.join(" ")).not.toContain(priv);
      expect(r.cmd.join(" ")).not.toContain(psk);
      expect(r.signal).toBe(false); // a write, once started, is not cancelled
    }
    expect(await readdir(dir)).toEqual([]);
  });

  it("a removal is one syncconf of the whole desired device", async () => {
    const want = { privateKey: priv, listenPort: 51820, peers: [peerB] };
    const runner = new TranscriptRunner(wgConf(dir, "syncconf", "plexd0", renderConfig({ privateKey: priv, listenPort: 51820, fwmark: 0 }, [peerB])));
    await wgTool(runner, dir).apply("plexd0", { upsert: [], remove: [a] }, want);
    expect(runner.done).toBe(true);
  });

  it("a refused config fails the apply with wg's message and leaves no FIFO", async () => {
    const runner = new TranscriptRunner(wgConf(dir, "addconf", "plexd0", undefined, fail("Unable to modify interface: Protocol not supported\n", 1)));
    await expect(wgTool(runner, dir).apply("plexd0", { upsert: [peerB], remove: [] }, { privateKey: priv, listenPort: 1, peers: [peerB] })).rejects.toMatchObject({
      code: "internal",
      message: expect.stringContaining("Protocol not supported"),
    });
    expect(await readdir(dir)).toEqual([]);
  });

  it("a wg that exits without reading its config ends the write instead of hanging it, even past a pipe's buffer", async () => {
    const many = Array.from({ length: 2000 }, (_, i) => ({ ...peerB, publicKey: Buffer.alloc(32, i % 256).fill(i >> 8, 0, 1).toString("base64") }));
    const runner = new TranscriptRunner(wgConf(dir, "addconf", "plexd0", undefined, fail("Line unrecognized\n", 1), { ignoresStdin: true }));
    expect(renderConfig({}, many).length).toBeGreaterThan(256 * 1024);
    await expect(wgTool(runner, dir).apply("plexd0", { upsert: many, remove: [] }, { privateKey: priv, listenPort: 1, peers: many })).rejects.toMatchObject({ code: "internal" });
    expect(await readdir(dir)).toEqual([]);
  });

  it("a failed mkfifo stops the apply before wg runs", async () => {
    const runner = new TranscriptRunner([{ cmd: ["mkfifo", "-m", "600", /\.fifo$/], result: fail("mkfifo: cannot create fifo: File exists\n", 1) }]);
    await expect(wgTool(runner, dir).apply("plexd0", { upsert: [peerB], remove: [] }, { privateKey: priv, listenPort: 1, peers: [peerB] })).rejects.toMatchObject({ code: "internal" });
    expect(runner.commands).toHaveLength(1);
    expect(await readdir(dir)).toEqual([]);
  });
});
