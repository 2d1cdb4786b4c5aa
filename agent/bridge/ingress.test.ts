// Ingress on loopback with real sockets and real TLS: terminate, passthrough, SNI routing on a
// shared port, the per-rule cap, the dial timeout, refused rules and their reasons, the redirect
// a port below 1024 asks for, and upsert/revoke by id.
import { connect as tcpConnect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { X509Certificate } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { parseConfig } from "../config/schema.js";
import { generateCa, generateServerCert, type Pem } from "../../test/support/tls-certs.js";
import { IngressService } from "./ingress.js";
import { bridgeChains } from "./kernel-parts.js";
import { Protocol, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { peekSni } from "./ingress-sni.js";

const log = pino({ level: "silent" });
let ca: Pem;
let certA: Pem;
let certB: Pem;
let echo: Server;
let echoPort = 0;
const services: IngressService[] = [];

beforeAll(async () => {
  ca = generateCa();
  certA = generateServerCert(ca, ["a.example.test"]);
  certB = generateServerCert(ca, ["b.example.test"]);
  // The "mesh service": answers every line with its name and the line.
  echo = createServer((s) => s.on("data", (d) => s.write(`echo:${d.toString()}`)));
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  echoPort = (echo.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => echo.close(() => r())));
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

function config(ingress: Record<string, unknown> = {}) {
  return parseConfig({ api: "https://cp.example.com", mode: "bridge", bridge: { ingress: { enabled: true, listen: "127.0.0.1:443", ...ingress } } });
}

async function start(rules: unknown[], ingress: Record<string, unknown> = {}): Promise<IngressService> {
  const svc = new IngressService({ log, peerPrefixes: () => ["127.0.0.0/8"] });
  services.push(svc);
  await svc.apply({ config: config(ingress), desired: { ingress_config: { rules } } });
  return svc;
}

const freePort = async (): Promise<number> => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
};

const target = () => `127.0.0.1:${echoPort}`;

function tlsRequest(port: number, servername: string, line = "hello"): Promise<{ reply: string; cert: X509Certificate }> {
  return new Promise((resolve, reject) => {
    const s: TLSSocket = tlsConnect({ host: "127.0.0.1", port, servername, ca: ca.cert }, () => {
      const cert = new X509Certificate(s.getPeerX509Certificate()!.raw);
      s.write(line);
      s.once("data", (d) => {
        resolve({ reply: d.toString(), cert });
        s.destroy();
      });
    });
    s.once("error", reject);
  });
}

function plainRequest(port: number, line = "hello"): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ host: "127.0.0.1", port }, () => s.write(line));
    s.once("data", (d) => {
      resolve(d.toString());
      s.destroy();
    });
    s.once("error", reject);
    s.once("close", () => resolve(""));
  });
}

describe("ingress rules", () => {
  it("terminates TLS with the control plane's certificate and forwards plaintext", async () => {
    const port = await freePort();
    const svc = await start([{ rule_id: "web", listen_port: port, target_addr: target(), mode: "terminate", cert_pem: certA.cert, key_pem: certA.key }]);
    const { reply, cert } = await tlsRequest(port, "a.example.test");
    expect(reply).toBe("echo:hello");
    expect(cert.fingerprint256).toBe(new X509Certificate(certA.cert).fingerprint256);
    await expect.poll(() => svc.ruleCounters().web).toMatchObject({ connections_total: 1, connections_open: 0, bytes_in: 5, bytes_out: 10 });
    expect(svc.status()).toMatchObject({ running: true, heartbeat: { enabled: true, rule_count: 1 }, bridgeHeartbeat: { ingress_enabled: true, active_ingress_rules: 1 }, capabilities: { ingress: "true", max_ingress_rules: "20" } });
  });

  it("routes a shared port by SNI: terminate for one name, passthrough for the other", async () => {
    const port = await freePort();
    // The passthrough target is a TLS server of its own (the mesh service ends TLS itself).
    const { createServer: tlsServer } = await import("node:tls");
    const inner = tlsServer({ cert: certB.cert, key: certB.key }, (s) => s.on("data", (d) => s.write(`inner:${d.toString()}`)));
    await new Promise<void>((r) => inner.listen(0, "127.0.0.1", r));
    try {
      const innerAddr = `127.0.0.1:${(inner.address() as AddressInfo).port}`;
      const svc = await start([
        { rule_id: "a", listen_port: port, sni: "A.example.test", target_addr: target(), mode: "terminate", cert_pem: certA.cert, key_pem: certA.key },
        { rule_id: "b", listen_port: port, sni: "b.example.test", target_addr: innerAddr, mode: "passthrough" },
      ]);
      const a = await tlsRequest(port, "a.example.test");
      expect(a.reply).toBe("echo:hello");
      const b = await tlsRequest(port, "b.example.test");
      expect(b.reply).toBe("inner:hello");
      expect(b.cert.subject).toContain("b.example.test");
      // No rule for this name: closed, counted.
      await expect(tlsRequest(port, "c.example.test")).rejects.toThrow();
      expect(svc.status().counters.unmatched_sni).toBe(1);
    } finally {
      await new Promise<void>((r) => inner.close(() => r()));
    }
  });

  it("holds the connection cap: connections over it are closed at once and counted", async () => {
    const port = await freePort();
    const svc = await start([{ rule_id: "cap", listen_port: port, target_addr: target(), mode: "passthrough" }], { max_connections_per_rule: 3 });
    const open: Socket[] = [];
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        new Promise<string>((resolve) => {
          const s = tcpConnect({ host: "127.0.0.1", port }, () => s.write("x"));
          open.push(s);
          s.once("data", (d) => resolve(d.toString()));
          s.once("close", () => resolve("closed"));
          s.once("error", () => resolve("closed"));
        }),
      ),
    );
    expect(results.filter((r) => r === "echo:x")).toHaveLength(3);
    expect(results.filter((r) => r === "closed")).toHaveLength(3);
    expect(svc.ruleCounters().cap).toMatchObject({ connections_open: 3, refused_over_cap: 3 });
    for (const s of open) s.destroy();
    await expect.poll(() => svc.ruleCounters().cap!.connections_open).toBe(0);
  });

  it("closes the client when the target cannot be reached, and counts it", async () => {
    // A port nothing listens on. (A target that never answers, cut by dial_timeout, is covered
    // in the bridge-ingress e2e, where the network is the test's own.)
    const [port, closedPort] = [await freePort(), await freePort()];
    const svc = await start([{ rule_id: "dead", listen_port: port, target_addr: `127.0.0.1:${closedPort}`, mode: "passthrough" }], { dial_timeout: "1s" });
    expect(await plainRequest(port)).toBe("");
    await expect.poll(() => svc.ruleCounters().dead).toMatchObject({ dial_failures: 1, connections_open: 0 });
  });

  it("refuses bad rules with their reasons and runs the good ones", async () => {
    const port = await freePort();
    const other = generateServerCert(ca, ["x.example.test"]);
    const svc = await start(
      [
        { rule_id: "good", listen_port: port, target_addr: target(), mode: "passthrough" },
        { rule_id: "outside", listen_port: port + 1, target_addr: "192.0.2.1:80", mode: "passthrough" },
        { rule_id: "nocert", listen_port: port + 2, target_addr: target(), mode: "terminate" },
        { rule_id: "mismatch", listen_port: port + 3, target_addr: target(), mode: "terminate", cert_pem: certA.cert, key_pem: other.key },
        { rule_id: "garbage", listen_port: port + 4, target_addr: target(), mode: "terminate", cert_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", key_pem: "secret-key-text" },
        { rule_id: "shared", listen_port: port, target_addr: target(), mode: "passthrough" },
        { rule_id: "badmode", listen_port: port + 5, target_addr: target(), mode: "udp" },
        { rule_id: "good", listen_port: port + 6, target_addr: target(), mode: "passthrough" },
      ],
      { max_rules: 5 },
    );
    const reasons = Object.fromEntries(svc.rejected.map((r) => [r.id, r.reason]));
    expect(reasons.outside).toMatch(/target_addr: 192\.0\.2\.1 is neither a mesh address .* nor inside a peer's allowed_ips/);
    expect(reasons.nocert).toMatch(/cert_pem and key_pem: required for mode terminate/);
    expect(reasons.mismatch).toMatch(/key_pem: does not match the certificate/);
    expect(reasons.garbage).toMatch(/cert_pem: not a PEM certificate/);
    expect(reasons.shared).toMatch(/listen_port \d+ is shared with rule good: rules may share a port only if every one has an sni/);
    expect(reasons.badmode).toMatch(/mode: must be passthrough or terminate/);
    expect(svc.rejected.filter((r) => r.id === "good")[0]?.reason).toMatch(/duplicate rule_id/);
    // Key material never appears in a reason or in status.
    expect(JSON.stringify(svc.status())).not.toContain("secret-key-text");
    expect(JSON.stringify(svc.status())).not.toContain("PRIVATE KEY");
    expect(Object.keys(svc.ruleCounters())).toEqual(["good"]);
    expect(await plainRequest(port)).toBe("echo:hello");
  });

  it("checks max_rules before anything else runs: only the newcomer is refused", async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const svc = await start([{ rule_id: "one", listen_port: p1, target_addr: target(), mode: "passthrough" }], { max_rules: 1 });
    await svc.apply({ config: config({ max_rules: 1 }), desired: { ingress_config: { rules: [{ rule_id: "two", listen_port: p2, target_addr: target(), mode: "passthrough" }, { rule_id: "one", listen_port: p1, target_addr: target(), mode: "passthrough" }] } } });
    expect(Object.keys(svc.ruleCounters())).toEqual(["one"]);
    expect(svc.rejected).toEqual([{ id: "two", reason: "more than bridge.ingress.max_rules (1) rules" }]);
  });

  it("upserts by id and removes on revoke, closing the rule's connections", async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const svc = await start([{ rule_id: "r", listen_port: p1, target_addr: target(), mode: "passthrough" }]);
    const held = tcpConnect({ host: "127.0.0.1", port: p1 });
    const closed = new Promise<void>((r) => held.once("close", () => r()));
    held.on("error", () => undefined);
    await expect.poll(() => svc.ruleCounters().r!.connections_open).toBe(1);
    // Same content: nothing moves. An absent block: nothing moves either.
    await svc.apply({ config: config(), desired: { ingress_config: { rules: [{ rule_id: "r", listen_port: p1, target_addr: target(), mode: "passthrough" }] } } });
    await svc.apply({ config: config(), desired: {} });
    expect(svc.ruleCounters().r!.connections_open).toBe(1);
    // New content under the same id: removed, then created on the new port.
    await svc.apply({ config: config(), desired: { ingress_config: { rules: [{ rule_id: "r", listen_port: p2, target_addr: target(), mode: "passthrough" }] } } });
    await closed;
    expect(await plainRequest(p2)).toBe("echo:hello");
    await expect(plainRequest(p1)).rejects.toThrow(/ECONNREFUSED/);
    await svc.apply({ config: config(), desired: { ingress_config: { rules: [] } } });
    expect(svc.ruleCounters()).toEqual({});
    await expect(plainRequest(p2)).rejects.toThrow(/ECONNREFUSED/);
    // Totals outlive the rules they came from.
    expect(svc.status().counters.connections_total).toBe(2);
  });

  it("serves a port below 1024 from an unprivileged port and asks for the redirect", async () => {
    const svc = await start([{ rule_id: "https", target_addr: target(), mode: "terminate", cert_pem: certA.cert, key_pem: certA.key }], { listen: "127.0.0.1:443" });
    const [rule] = svc.kernel().prerouting ?? [];
    expect(rule).toMatchObject({ id: "ingress:redirect:443", protocol: "tcp", portFrom: 443, dstCidr: "127.0.0.1/32", verdict: "redirect" });
    expect(rule!.redirectPort).toBeGreaterThanOrEqual(1024);
    // Into the FirewallSpec as nat chain prerouting, in the form privhelper takes.
    expect(bridgeChains([svc.kernel()])).toEqual([{ name: "prerouting", hook: "prerouting", rules: [expect.objectContaining({ protocol: Protocol.TCP, portFrom: 443, dstCidr: "127.0.0.1/32", action: RuleAction.REDIRECT, redirectPort: rule!.redirectPort })] }]);
    // What the redirect would deliver: the unprivileged port serves the rule.
    expect((await tlsRequest(rule!.redirectPort!, "a.example.test")).reply).toBe("echo:hello");
    await svc.stop();
    expect(svc.kernel().prerouting).toEqual([]);
    expect(svc.status()).toMatchObject({ running: false, detail: "not running", capabilities: {}, bridgeHeartbeat: { ingress_enabled: false, active_ingress_rules: 0 } });
  });
});

describe("peekSni", () => {
  it("reads the name from a real ClientHello, byte by byte, without consuming it", async () => {
    const srv = createServer();
    const hello = new Promise<Buffer>((resolve) =>
      srv.on("connection", (s) => {
        let b = Buffer.alloc(0);
        s.on("data", (d) => {
          b = Buffer.concat([b, d]);
          if (peekSni(b).kind !== "more") {
            resolve(b);
            s.destroy();
          }
        });
      }),
    );
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const c = tlsConnect({ host: "127.0.0.1", port: (srv.address() as AddressInfo).port, servername: "Svc.Example.Test" });
    c.on("error", () => undefined);
    const buf = await hello;
    srv.close();
    expect(peekSni(buf)).toEqual({ kind: "hello", sni: "svc.example.test" });
    for (let n = 0; n < buf.length; n += 7) expect(peekSni(buf.subarray(0, n)).kind).toBe("more");
    expect(peekSni(Buffer.from("GET / HTTP/1.1\r\n"))).toEqual({ kind: "not_tls" });
  });
});
