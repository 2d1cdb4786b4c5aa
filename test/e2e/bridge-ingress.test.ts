import { X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { generateCa, generateServerCert } from "../support/tls-certs.js";
import { createTopology, ensureSystemUsers, makeTempDir, nsExec, spawnInNamespace, useHarness, until, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { joinNode, meshIp, nodeId } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";

// Public ingress through a bridge (docs/bridge.md#ingress), on real namespaces:
//
//   hub 192.0.2.1: mockcp (issues the ingress certificates from its CA)
//   bridge (mode: bridge, ingress on 0.0.0.0:443) ── mesh ── svc (services on its mesh IP)
//   inet: "the internet", not in the mesh; curl and openssl run here
//
// The bridge agent is unprivileged: port 443 reaches it through privhelper's nat redirect.

useHarness();

const cap = 4;
let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let bridge: PlexdNode;
let svc: PlexdNode;
let bridgeIp: string;
let svcIp: string;
let svcCaFile: string;
let svcCertPem: string;

// The services on svc: plain HTTP on 8080 (behind terminate), a slow one on 8081 (holds each
// request 4 s, for the cap), HTTPS with svc's own certificate on 8443 (behind passthrough).
const servicesScript = `
const http = require("node:http"), https = require("node:https"), fs = require("node:fs");
const [ip, certFile, keyFile] = process.argv.slice(1);
http.createServer((q, s) => s.end("hello from svc\\n")).listen(8080, ip);
http.createServer((q, s) => setTimeout(() => s.end("slow\\n"), 4000)).listen(8081, ip);
https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) }, (q, s) => s.end("tls from svc\\n")).listen(8443, ip, () => console.log("services up"));
`;

async function curl(args: string[], timeoutS = 10): Promise<{ code: number | undefined; out: string; ms: number }> {
  const t0 = Date.now();
  const r = await nsExec(topo.node("inet").ns, ["curl", "-sS", "--max-time", String(timeoutS), ...args], { reject: false, timeoutMs: (timeoutS + 10) * 1000 });
  return { code: r.exitCode, out: r.stdout + r.stderr, ms: Date.now() - t0 };
}

/** The ingress line of the Bridge section of `plexd status` on the bridge: its text and its counters. */
async function ingressStatus(): Promise<{ counters: Record<string, number>; detail: string } | undefined> {
  const r = await bridge.plexd(["status"]);
  const line = r.output.split("\n").find((l) => /^\s+ingress\s/.test(l));
  if (line === undefined) return undefined;
  const counters = /\(([a-z_]+ \d+(?:, [a-z_]+ \d+)*)\)$/.exec(line)?.[1] ?? "";
  return { detail: line, counters: Object.fromEntries(counters.split(", ").filter((kv) => kv !== "").map((kv) => [kv.split(" ")[0]!, Number(kv.split(" ")[1])])) };
}

/** SHA-256 fingerprint of the certificate the bridge's port serves for `sni`, as openssl sees it from the internet. */
async function servedFingerprint(port: number, sni: string): Promise<string> {
  const s = await nsExec(topo.node("inet").ns, ["openssl", "s_client", "-connect", `${bridgeIp}:${port}`, "-servername", sni], { input: "", reject: false });
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(s.stdout)?.[0];
  if (pem === undefined) throw new Error(`no certificate served on ${port} for ${sni}: ${s.stderr}`);
  return new X509Certificate(pem).fingerprint256;
}

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["bridge", "svc", "inet"] });
  cp = await startCpOnHub(topo, { stun: true });
  const api = `https://${topo.hub.ip}:${cpPort}`;
  svc = await joinNode({ topo, cp, api, users, name: "svc", config: { policy: { default: "allow" } } });
  bridge = await joinNode({
    topo,
    cp,
    api,
    users,
    name: "bridge",
    config: {
      mode: "bridge",
      policy: { default: "allow" },
      bridge: { relay: { enabled: false }, ingress: { enabled: true, listen: "0.0.0.0:443", max_connections_per_rule: cap, dial_timeout: "2s" } },
    },
  });
  bridgeIp = topo.node("bridge").ip;
  await until("bridge reaches svc over the mesh", async () => (await nsExec(bridge.ns, ["ping", "-c", "1", "-W", "2", meshIp(svc)], { reject: false })).exitCode === 0, 60_000);
  svcIp = meshIp(svc);

  // svc's own certificate, from a CA that is not mockcp's: passthrough must serve it untouched.
  const dir = makeTempDir("svc-tls", { mode: 0o755 });
  const svcCa = generateCa();
  const pem = generateServerCert(svcCa, ["tls.example.test"]);
  svcCertPem = pem.cert;
  svcCaFile = join(dir, "svc-ca.pem");
  writeFileSync(svcCaFile, svcCa.cert, { mode: 0o644 });
  writeFileSync(join(dir, "svc.pem"), pem.cert, { mode: 0o644 });
  writeFileSync(join(dir, "svc-key.pem"), pem.key, { mode: 0o600 });
  const p = spawnInNamespace({ ns: svc.ns, name: "svc-services", argv: [process.execPath, "-e", servicesScript, svcIp, join(dir, "svc.pem"), join(dir, "svc-key.pem")] });
  await p.waitForLine(/services up/, 10_000);
}, 240_000);

describe("bridge ingress", () => {
  it("terminates TLS on port 443 with the control plane's certificate and reaches the mesh service", async () => {
    const id = nodeId(bridge);
    const set = await cp.client.setIngressRule(id, "web", { target_addr: `${svcIp}:8080`, mode: "terminate", issue_cert: ["web.example.test"] });
    await bridge.agent!.waitForLine(/"rule_id":"web".*"msg":"ingress rule running"/, 30_000);

    // The redirect privhelper put in front of the agent's unprivileged port.
    await until("the 443 redirect is in place", async () => /tcp dport 443 counter packets \d+ bytes \d+ redirect to :\d+/.test((await nsExec(bridge.ns, ["nft", "list", "table", "inet", "plexd"])).stdout), 30_000);

    const r = await curl(["--cacert", cp.caFile, "--resolve", `web.example.test:443:${bridgeIp}`, "https://web.example.test/"]);
    expect(r.out).toBe("hello from svc");
    expect(r.code).toBe(0);

    // The certificate served is exactly the one mockcp issued (and signed with the CA curl trusted).
    const issued = (await cp.client.events(id)).filter((e) => e.event_type === "ingress_rule_assigned" && e.payload.rule_id === "web").pop()!;
    expect(await servedFingerprint(443, "web.example.test")).toBe(new X509Certificate(issued.payload.cert_pem as string).fingerprint256);
    expect(new X509Certificate(issued.payload.cert_pem as string).verify(new X509Certificate(set.ca_pem).publicKey)).toBe(true);
    // The key went to the bridge and nowhere into its log.
    expect(bridge.agent!.output()).not.toContain("PRIVATE KEY");
  });

  it("passes TLS through untouched on its own port: the client sees the mesh service's certificate", async () => {
    await cp.client.setIngressRule(nodeId(bridge), "tls", { listen_port: 8443, target_addr: `${svcIp}:8443`, mode: "passthrough" });
    await bridge.agent!.waitForLine(/"rule_id":"tls".*"msg":"ingress rule running"/, 30_000);
    const r = await curl(["--cacert", svcCaFile, "--resolve", `tls.example.test:8443:${bridgeIp}`, "https://tls.example.test:8443/"]);
    expect(r.out).toBe("tls from svc");
    // The certificate the client saw is svc's own: the bridge did not end this TLS.
    expect(await servedFingerprint(8443, "tls.example.test")).toBe(new X509Certificate(svcCertPem).fingerprint256);
  });

  it(`holds the cap of ${cap} connections per rule under ${2 * cap} parallel clients, and counts the refused`, async () => {
    await cp.client.setIngressRule(nodeId(bridge), "slow", { listen_port: 8081, target_addr: `${svcIp}:8081`, mode: "passthrough" });
    await bridge.agent!.waitForLine(/"rule_id":"slow".*"msg":"ingress rule running"/, 30_000);
    const before = (await ingressStatus())?.counters.refused_over_cap ?? 0;
    const results = await Promise.all(Array.from({ length: 2 * cap }, () => curl([`http://${bridgeIp}:8081/`], 15)));
    const served = results.filter((r) => r.out === "slow");
    const refused = results.filter((r) => r.code !== 0);
    expect(served, JSON.stringify(results)).toHaveLength(cap);
    expect(refused).toHaveLength(cap);
    // Refused at once, not after the slow service's 4 s.
    for (const r of refused) expect(r.ms).toBeLessThan(3_500);
    await expect.poll(async () => (await ingressStatus())?.counters.refused_over_cap, { timeout: 15_000 }).toBe(before + cap);
  });

  it("gives up a target that does not answer after dial_timeout and closes the client", async () => {
    // A mesh address no peer holds: WireGuard has no key for it, so the SYN goes nowhere.
    await cp.client.setIngressRule(nodeId(bridge), "dead", { listen_port: 8082, target_addr: "10.100.255.254:80", mode: "passthrough" });
    await bridge.agent!.waitForLine(/"rule_id":"dead".*"msg":"ingress rule running"/, 30_000);
    const before = (await ingressStatus())?.counters.dial_failures ?? 0;
    const r = await curl([`http://${bridgeIp}:8082/`], 15);
    expect(r.code).not.toBe(0);
    expect(r.ms).toBeGreaterThanOrEqual(1_800);
    expect(r.ms).toBeLessThan(8_000);
    await expect.poll(async () => (await ingressStatus())?.counters.dial_failures, { timeout: 15_000 }).toBe(before + 1);
  });

  it("refuses bad rules with their reasons and runs the others", async () => {
    const id = nodeId(bridge);
    await cp.client.setIngressRule(id, "outside", { listen_port: 8090, target_addr: `${topo.node("inet").ip}:80`, mode: "passthrough" });
    await cp.client.setIngressRule(id, "nocert", { listen_port: 8091, target_addr: `${svcIp}:8080`, mode: "terminate" });
    await cp.client.setIngressRule(id, "clash", { listen_port: 8443, target_addr: `${svcIp}:8080`, mode: "passthrough" });
    await bridge.agent!.waitForLine(/"rule_id":"outside".*is neither a mesh address \(10\.100\.0\.0\/16\) nor inside a peer's allowed_ips.*"msg":"ingress rule refused"/, 30_000);
    await bridge.agent!.waitForLine(/"rule_id":"nocert".*cert_pem and key_pem: required for mode terminate/, 30_000);
    await bridge.agent!.waitForLine(/"rule_id":"clash".*listen_port 8443 is shared with rule tls/, 30_000);
    expect((await curl([`http://${bridgeIp}:8090/`])).code).toBe(7); // nothing listens
    await expect.poll(async () => (await ingressStatus())?.detail, { timeout: 15_000 }).toMatch(/refused: .*outside: target_addr/);
    // The rules that were fine still serve.
    expect((await curl(["--cacert", cp.caFile, "--resolve", `web.example.test:443:${bridgeIp}`, "https://web.example.test/"])).out).toBe("hello from svc");
    for (const rule of ["outside", "nocert", "clash"]) await cp.client.removeIngressRule(id, rule);
  });

  it("revoking a rule closes its listener and removes its redirect; heartbeat and capabilities report ingress", async () => {
    const id = nodeId(bridge);
    await until("the heartbeat reports the running rules", async () => {
      const hb = (await cp.client.heartbeats(id)).pop()?.body as { ingress?: { enabled: boolean; rule_count: number }; bridge?: { ingress_enabled?: boolean; active_ingress_rules?: number } } | undefined;
      return hb?.ingress?.enabled === true && hb.ingress.rule_count === 4 && hb.bridge?.ingress_enabled === true && hb.bridge.active_ingress_rules === 4;
    }, 30_000);
    // The capabilities announce ingress on the bridge, with its rule limit.
    await until("capabilities announce ingress", async () => {
      const caps = (await cp.client.getNode(id)).capabilities as { bridge?: Record<string, string> } | null;
      return caps?.bridge?.ingress === "true" && caps.bridge.max_ingress_rules === "20";
    }, 30_000);
    await cp.client.removeIngressRule(id, "web");
    await bridge.agent!.waitForLine(/"rule_id":"web".*"msg":"ingress rule removed"/, 30_000);
    await until("the 443 redirect is gone", async () => !/dport 443/.test((await nsExec(bridge.ns, ["nft", "list", "table", "inet", "plexd"])).stdout), 30_000);
    expect((await curl(["--cacert", cp.caFile, "--resolve", `web.example.test:443:${bridgeIp}`, "https://web.example.test/"])).code).toBe(7);
    // The other rules are untouched.
    expect((await curl(["--cacert", svcCaFile, "--resolve", `tls.example.test:8443:${bridgeIp}`, "https://tls.example.test:8443/"])).out).toBe("tls from svc");
  });
});
