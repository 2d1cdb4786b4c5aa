// ApplyFirewall / ReadFirewall end to end: the built privhelper runs inside a namespace
// this test creates, the agent's policy compiler produces the spec, the agent's client
// talks to the socket, and real nft and real packets (a veth pair standing in for the
// WireGuard interface) show what happened.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { compilePolicy, type FirewallSpecPlain, type PolicyInput } from "../../agent/policy/compile.js";
import { firewallDrift } from "../../agent/policy/drift.js";
import { connectPrivhelper, type PrivClient } from "../../agent/privclient/client.js";
import { RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { fixtureSpec } from "../support/firewall-spec.js";
import { ensureBuilt, ensurePrivUsers, startPrivhelper, stopPrivhelper } from "./privhelper-util.js";

const tag = randomBytes(3).toString("hex");
const nsA = `pxfw-a-${tag}`;
const nsB = `pxfw-b-${tag}`;
// Unique even though it lives in our namespace: teardown looks for wireguard-go processes
// by interface name host-wide, and must never find another test's.
const mesh = `plexd${tag}`;
const peerIf = `pxfb${tag}`;
const portOpen = 8080;
const portClosed = 9090;

let work: string;
let sock: string;
let helper: ChildProcess | undefined;
let server: ChildProcess | undefined;
let client: PrivClient;
/** `table inet other` as it was before any test: plexd must never change it. */
let foreign: string;

async function sh(argv: string[], opts: { reject?: boolean; timeout?: number } = {}) {
  return execa(argv[0]!, argv.slice(1), { timeout: opts.timeout ?? 20_000, reject: opts.reject ?? true });
}
const inA = async (argv: string[]) => (await sh(["ip", "netns", "exec", nsA, ...argv])).stdout;
const ruleset = () => inA(["nft", "-s", "list", "ruleset"]);
const otherTable = () => inA(["nft", "list", "table", "inet", "other"]);

const compile = (policies: PolicyInput[]) =>
  compilePolicy({
    policies,
    local: { id: "n_a", meshIp: "10.100.0.1" },
    peers: [{ id: "n_b", mesh_ip: "10.100.0.2" }],
    config: { enabled: true, default: "deny", logDenied: true, meshInterface: mesh, mode: "node" },
  });
const onlyPort = [{ id: "pol-web", rules: [{ src: "n_b", dst: "n_a", port: portOpen, protocol: "tcp", action: "allow" }] }];
const withPing = [...onlyPort, { id: "pol-icmp", rules: [{ src: "10.100.0.2", dst: "n_a", port: 0, protocol: "", action: "allow" }] }];
const specOf = (p: PolicyInput[]): FirewallSpecPlain => compile(p).firewall!;

/** Connect from B to A:port; "ok", "timeout" (dropped) or "refused". */
async function tcpFromB(port: number): Promise<string> {
  const script = `const s=require("node:net").connect({host:"10.100.0.1",port:${port}});s.setTimeout(1500);s.on("connect",()=>{console.log("ok");s.destroy()});s.on("timeout",()=>{console.log("timeout");s.destroy()});s.on("error",(e)=>console.log(e.code==="ECONNREFUSED"?"refused":e.code))`;
  return (await sh(["ip", "netns", "exec", nsB, "node", "-e", script])).stdout.trim();
}
async function pingFromB(): Promise<boolean> {
  return (await sh(["ip", "netns", "exec", nsB, "ping", "-c", "1", "-W", "1", "10.100.0.1"], { reject: false })).exitCode === 0;
}

/**
 * A veth named like the mesh interface stands in for WireGuard: the firewall only cares about
 * iifname and addresses. Teardown removes the mesh interface by its name, so a test that
 * tears down takes the stand-in along; the next test gets it back here.
 */
async function ensureMeshLink(): Promise<void> {
  if ((await sh(["ip", "-n", nsA, "link", "show", mesh], { reject: false })).exitCode === 0) return;
  await sh(["ip", "link", "add", mesh, "netns", nsA, "type", "veth", "peer", "name", peerIf, "netns", nsB]);
  await sh(["ip", "-n", nsA, "addr", "add", "10.100.0.1/16", "dev", mesh]);
  await sh(["ip", "-n", nsB, "addr", "add", "10.100.0.2/16", "dev", peerIf]);
  await sh(["ip", "-n", nsA, "link", "set", mesh, "up"]);
  await sh(["ip", "-n", nsB, "link", "set", peerIf, "up"]);
}

beforeAll(async () => {
  await ensureBuilt();
  await ensurePrivUsers();
  work = await mkdtemp(join(tmpdir(), "plexd-fw-"));
  await chmod(work, 0o755);
  const configPath = join(work, "config.yaml");
  sock = join(work, "run", "privhelper.sock");
  await writeFile(configPath, `mesh:\n  interface: ${mesh}\n`);

  for (const ns of [nsA, nsB]) {
    await sh(["ip", "netns", "add", ns]);
    await sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
  }
  await ensureMeshLink();
  // Someone else's table, which plexd must never touch.
  await inA(["nft", "add", "table", "inet", "other"]);
  await inA(["nft", "add", "chain", "inet", "other", "c", "{ type filter hook input priority 10; policy accept; }"]);
  await inA(["nft", "add", "rule", "inet", "other", "c", "tcp", "dport", "7", "counter", "accept"]);

  // TCP listeners in A on both ports, so "timeout" can only mean the firewall dropped.
  const listen = `const net=require("node:net");let n=0;for(const p of [${portOpen},${portClosed}])net.createServer(c=>c.end()).listen(p,"0.0.0.0",()=>{if(++n===2)console.log("ready")})`;
  server = spawn("ip", ["netns", "exec", nsA, "node", "-e", listen], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    server!.stdout!.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
    server!.once("exit", (code) => reject(new Error(`listener exited ${code}`)));
  });

  foreign = await otherTable();
  helper = await startPrivhelper(["--config", configPath, "--socket", sock], sock, ["ip", "netns", "exec", nsA]);
  client = connectPrivhelper({ socketPath: sock });
});

/** Makes `spec` the live ruleset; what each test starts from is its own to set. */
async function given(spec: FirewallSpecPlain): Promise<void> {
  const res = await client.applyFirewall({ spec }, { timeoutMs: 60_000 });
  expect(res.result?.failedStep).toBe("");
}

afterAll(async () => {
  client?.close();
  await stopPrivhelper(helper);
  if (server?.pid !== undefined && server.exitCode === null) server.kill("SIGKILL");
  for (const ns of [nsA, nsB]) await execa("ip", ["netns", "del", ns], { reject: false });
  if (work) await rm(work, { recursive: true, force: true });
});

describe("privhelper firewall", () => {
  // Every test starts with the stand-in mesh link up and without table inet plexd.
  beforeEach(async () => {
    await ensureMeshLink();
    await given({ chains: [] });
  });

  it("applies the compiled policy as table inet plexd, rules carrying their ids", async () => {
    const spec = specOf(onlyPort);
    const res = await client.applyFirewall({ spec }, { timeoutMs: 60_000 });
    expect(res.result?.failedStep).toBe("");
    expect(res.result?.changed).toBe(true);
    const text = await ruleset();
    expect(text).toContain("table inet plexd");
    expect(text).toMatch(new RegExp(`chain input \\{\\s+type filter hook input priority filter; policy accept;\\s+iifname "${mesh}" counter jump plexd-mesh comment "plexd:[0-9a-f]{16}"`));
    for (const r of spec.chains.flatMap((c) => c.rules)) expect(text).toContain(`comment "plexd:${r.id}"`);
    expect(text).toContain(`ip saddr 10.100.0.2 ip daddr 10.100.0.1 tcp dport ${portOpen} counter accept`);
    expect(text).toContain('limit rate 10/second counter log prefix "plexd-deny "');
    // read back: exactly the spec, every rule recognised
    const live = await client.readFirewall({});
    expect(firewallDrift(spec, live)).toEqual([]);
    expect(live.chains.map((c) => c.name)).toEqual(spec.chains.map((c) => c.name));
    expect(await otherTable()).toBe(foreign);
  });

  it("re-applying the same spec changes nothing", async () => {
    await given(specOf(onlyPort));
    const res = await client.applyFirewall({ spec: specOf(onlyPort) }, { timeoutMs: 60_000 });
    expect(res.result?.changed).toBe(false);
    expect(res.result?.plan).toEqual([]);
  });

  it("enforces: TCP to the allowed port connects, other ports and ping are dropped", async () => {
    await given(specOf(onlyPort));
    expect(await tcpFromB(portOpen)).toBe("ok");
    expect(await tcpFromB(portClosed)).toBe("timeout");
    expect(await pingFromB()).toBe(false);
    // the default-deny drop counted what it dropped
    const live = await client.readFirewall({});
    const meshRules = live.chains.find((c) => c.name === "plexd-mesh")!.rules;
    const drop = meshRules.at(-1)!;
    expect(drop.rule?.action).toBe(RuleAction.DROP);
    expect(drop.packets).toBeGreaterThan(0n);
  });

  it("an ICMP-capable allow (protocol any, the peer's address) lets ping through", async () => {
    await given(specOf(onlyPort));
    const res = await client.applyFirewall({ spec: specOf(withPing) }, { timeoutMs: 60_000 });
    expect(res.result?.changed).toBe(true);
    expect(res.result?.plan?.map((s) => s.detail)).toEqual([`plexd-mesh: ${specOf(withPing).chains[2]!.rules.length} rules`]);
    expect(await pingFromB()).toBe(true);
    expect(await tcpFromB(portOpen)).toBe("ok");
  });

  it("dry_run plans without changing the ruleset", async () => {
    await given(specOf(withPing));
    const before = await ruleset();
    const res = await client.applyFirewall({ spec: specOf(onlyPort), dryRun: true }, { timeoutMs: 60_000 });
    expect(res.result?.changed).toBe(false);
    expect(res.result?.plan?.map((s) => s.detail)).toEqual([`plexd-mesh: ${specOf(onlyPort).chains[2]!.rules.length} rules`]);
    expect(await ruleset()).toBe(before);
  });

  it("a rogue rule shows up unrecognised and the next apply removes it", async () => {
    await given(specOf(withPing));
    await inA(["nft", "add", "rule", "inet", "plexd", "plexd-mesh", "tcp", "dport", "22", "accept"]);
    const live = await client.readFirewall({});
    const rogue = live.chains.find((c) => c.name === "plexd-mesh")!.rules.filter((r) => !r.recognised);
    expect(rogue).toHaveLength(1);
    expect(rogue[0]!.raw).toContain('"dport"');
    const spec = specOf(withPing);
    expect(firewallDrift(spec, live)).toHaveLength(1);
    const res = await client.applyFirewall({ spec }, { timeoutMs: 60_000 });
    expect(res.result?.changed).toBe(true);
    expect(await ruleset()).not.toContain("tcp dport 22 accept");
    expect(firewallDrift(spec, await client.readFirewall({}))).toEqual([]);
  });

  it("refuses invalid specs with INVALID_ARGUMENT and leaves the ruleset as it was", async () => {
    await given(specOf(withPing));
    const before = await ruleset();
    const good = specOf(withPing);
    const mutate = (fn: (s: FirewallSpecPlain) => void) => {
      const s = structuredClone(good);
      fn(s);
      return s;
    };
    const bad = [
      mutate((s) => (s.chains[2]!.rules[1]!.iifname = "lo")),
      mutate((s) => (s.chains[0]!.name = "INPUT")),
      mutate((s) => (s.chains[2]!.rules[1]!.srcCidr = "10.100.0.2/32 accept")),
      mutate((s) => Object.assign(s.chains[2]!.rules[1]!, { portFrom: 90, portTo: 80 })),
      mutate((s) => (s.chains[2]!.rules[1]!.id = "not-hex")),
      mutate((s) => (s.chains[0]!.rules[0]!.iifname = "")),
    ];
    for (const spec of bad) await expect(client.applyFirewall({ spec })).rejects.toMatchObject({ code: "invalid_argument" });
    expect(await ruleset()).toBe(before);
  });

  it("an empty spec removes table inet plexd and nothing else", async () => {
    await given(specOf(withPing));
    const res = await client.applyFirewall({ spec: { chains: [] } });
    expect(res.result?.changed).toBe(true);
    expect(await ruleset()).not.toContain("table inet plexd");
    expect(await otherTable()).toBe(foreign);
    expect((await client.readFirewall({})).tableExists).toBe(false);
    expect(await pingFromB()).toBe(true); // no table, no filtering
  });

  it("every rule form privhelper renders reads back identically from real nft", async () => {
    // The unit fixture (all actions, port ranges, l4proto, IPv6, log with rate, nat chain),
    // on this test's allow-listed interface name.
    const spec = JSON.parse(JSON.stringify(fixtureSpec).replaceAll('"plexd0"', JSON.stringify(mesh))) as FirewallSpecPlain;
    expect((await client.applyFirewall({ spec })).result?.changed).toBe(true);
    const live = await client.readFirewall({});
    expect(live.chains.every((c) => c.recognised && c.rules.every((r) => r.recognised))).toBe(true);
    const canonical = (r: object) => ({ oifname: "", iifname: "", srcCidr: "", dstCidr: "", protocol: 0, portFrom: 0, portTo: 0, ctEstablished: false, jumpTarget: "", logPrefix: "", logRatePerSecond: 0, ...r });
    for (const c of spec.chains) {
      const got = live.chains.find((l) => l.name === c.name)!;
      expect(got.hook).toBe(c.hook);
      expect(got.rules.map((r) => ({ ...r.rule }))).toEqual(c.rules.map((r) => expect.objectContaining(canonical(r))));
    }
    expect((await client.applyFirewall({ spec })).result?.changed).toBe(false);
    expect(await otherTable()).toBe(foreign);
  });

  it("teardown removes table inet plexd and leaves the foreign table alone", async () => {
    expect((await client.applyFirewall({ spec: specOf(onlyPort) }, { timeoutMs: 60_000 })).result?.changed).toBe(true);
    const res = await client.teardown({});
    expect(res.removed).toContain("table inet plexd");
    // The mesh interface is plexd's by name, so the stand-in went too.
    expect((await sh(["ip", "-n", nsA, "link", "show", mesh], { reject: false })).exitCode).not.toBe(0);
    expect(await ruleset()).not.toContain("table inet plexd");
    expect(await otherTable()).toBe(foreign);
  });
});
