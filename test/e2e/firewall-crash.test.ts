// Crash safety of ApplyFirewall: privhelper killed with SIGKILL at random points of a large
// apply leaves table inet plexd holding either the old ruleset or the new one, never a mix —
// nft transactions are atomic and privhelper sends the whole table as one transaction.
import { type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compilePolicy, type PolicyInput } from "../../agent/policy/compile.js";
import { connectPrivhelper, type PrivClient } from "../../agent/privclient/client.js";
import { FirewallSpecSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { ensureBuilt, ensurePrivUsers, startPrivhelper, stopPrivhelper } from "./privhelper-util.js";

const tag = randomBytes(3).toString("hex");
const ns = `pxfc-${tag}`;
const mesh = `plexd${tag}`;
let work: string;
let sock: string;
let configPath: string;
let helper: ChildProcess | undefined;

function spec(n: number) {
  const peers = Array.from({ length: n }, (_, i) => ({ id: `n_${i}`, mesh_ip: `10.100.${(i + 2) >> 8}.${(i + 2) & 255}` }));
  const policies: PolicyInput[] = [{ id: "p", rules: peers.map((p, i) => ({ src: p.id, dst: "n_local", port: 1024 + i, protocol: "tcp", action: "allow" })) }];
  const fw = compilePolicy({ policies, local: { id: "n_local", meshIp: "10.100.0.1" }, peers, config: { enabled: true, default: "deny", logDenied: true, meshInterface: mesh, mode: "node" } }).firewall!;
  return create(FirewallSpecSchema, fw);
}

const meshRules = async (): Promise<number> => {
  const r = await execa("ip", ["netns", "exec", ns, "nft", "-j", "list", "chain", "inet", "plexd", "plexd-mesh"], { reject: false });
  if (r.exitCode !== 0) return -1;
  return (JSON.parse(r.stdout) as { nftables: Record<string, unknown>[] }).nftables.filter((o) => "rule" in o).length;
};

/** Waits until no nft runs in the namespace: one privhelper started finishes on its own. */
async function nftSettled(timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const pids = (await execa("ip", ["netns", "pids", ns], { reject: false })).stdout.split("\n").filter(Boolean);
    const comms = await Promise.all(pids.map((p) => readFile(`/proc/${p}/comm`, "utf8").catch(() => "")));
    if (!comms.some((c) => c.trim() === "nft")) return;
    if (Date.now() > end) throw new Error(`nft still running in ${ns} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  await ensureBuilt();
  await ensurePrivUsers();
  work = await mkdtemp(join(tmpdir(), "plexd-fwcrash-"));
  await chmod(work, 0o755);
  configPath = join(work, "config.yaml");
  sock = join(work, "run", "privhelper.sock");
  await writeFile(configPath, `mesh:\n  interface: ${mesh}\n`);
  await execa("ip", ["netns", "add", ns]);
  // No dummy module on these kernels: a veth pair stands in for the mesh interface.
  await execa("ip", ["netns", "exec", ns, "ip", "link", "add", mesh, "type", "veth", "peer", "name", `pxc${tag}`]);
});

afterAll(async () => {
  await stopPrivhelper(helper, "SIGKILL");
  await execa("ip", ["netns", "pids", ns], { reject: false }).then((r) => r.stdout.split("\n").filter(Boolean).forEach((p) => process.kill(Number(p), "SIGKILL")));
  await execa("ip", ["netns", "del", ns], { reject: false });
  if (work) await rm(work, { recursive: true, force: true });
});

describe("ApplyFirewall crash safety", () => {
  it("kill -9 during a 10,000-rule apply leaves the old or the new ruleset, never a mix", async () => {
    const small = spec(10);
    const big = spec(10_000);
    const smallCount = small.chains.find((c) => c.name === "plexd-mesh")!.rules.length;
    const bigCount = big.chains.find((c) => c.name === "plexd-mesh")!.rules.length;
    const seen: string[] = [];
    for (const delay of [50, 200, 400, 700, 1000, 1500]) {
      helper = await startPrivhelper(["--config", configPath, "--socket", sock], sock, ["ip", "netns", "exec", ns]);
      let client: PrivClient = connectPrivhelper({ socketPath: sock });
      await client.applyFirewall({ spec: small });
      expect(await meshRules()).toBe(smallCount);
      const pending = client.applyFirewall({ spec: big }, { timeoutMs: 60_000 }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, delay));
      await stopPrivhelper(helper, "SIGKILL");
      await pending;
      client.close();
      // An nft child already running finishes its transaction on its own; wait for it (a fixed
      // pause is not enough on a loaded machine: 10,000 rules can take nft several seconds).
      await nftSettled();
      const n = await meshRules();
      seen.push(`${delay}ms:${n === smallCount ? "old" : n === bigCount ? "new" : `MIX(${n})`}`);
      expect([smallCount, bigCount]).toContain(n);
      client = connectPrivhelper({ socketPath: sock });
      client.close();
    }
    console.log(`[firewall-crash] outcomes by kill delay: ${seen.join(", ")}`);
  });
});
