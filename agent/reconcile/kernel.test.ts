// The kernel reconciler against a recording stand-in for the privhelper interface: what is
// sent when, and what is not sent again.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromBinary } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ApplyFirewallResponseSchema,
  ApplyMeshRequestSchema,
  ApplyMeshResponseSchema,
  ReadFirewallResponseSchema,
  ReadMeshResponseSchema,
  type FirewallSpec,
  type MeshSpec,
} from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { parseConfig } from "../config/schema.js";
import { HealthRegistry } from "../health/registry.js";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import type { PrivClient } from "../privclient/client.js";
import type { Peer } from "../mesh/peer.js";
import { DesiredStateStore } from "../state/desired.js";
import { createLogger } from "../util/log.js";
import { KernelReconciler } from "./kernel.js";

let dir: string;
let ac: AbortController;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "plexd-kernel-"));
  ac = new AbortController();
});
afterEach(async () => {
  ac.abort();
  rmSync(dir, { recursive: true, force: true });
});

const peer = (i: number): Peer => ({ id: `n_${i}`, public_key: generateWireGuardKeyPair().publicKey, mesh_ip: `10.100.0.${i + 1}`, endpoint: "", allowed_ips: [], psk: "" });
const ok = { result: { changed: true, plan: [], failedStep: "", rolledBack: false, error: "" } };

interface Calls {
  /** Each ApplyMesh as the peer set it means (a delta resolved on the held base). */
  mesh: MeshSpec[];
  /** Whether each ApplyMesh was a delta, and its size in bytes. */
  deltas: { delta: boolean; bytes: number }[];
  firewall: FirewallSpec[];
  failMesh: number;
  /** The base privhelper holds (it keeps the last applied peer set, as privhelper/mesh/base.ts). */
  held: { generation: bigint; peers: Map<string, MeshSpec["peers"][number]> } | undefined;
}

function recordingPriv(calls: Calls, live: { mesh?: MeshSpec; firewall?: FirewallSpec }): PrivClient {
  return {
    applyMeshEncoded: async (bytes: Uint8Array) => {
      if (calls.failMesh > 0) {
        calls.failMesh--;
        calls.held = undefined;
        throw Object.assign(new Error("privhelper gone"), { code: 14, details: "privhelper gone" });
      }
      const req = fromBinary(ApplyMeshRequestSchema, bytes);
      const delta = req.baseGeneration !== 0n;
      if (delta && calls.held?.generation !== req.baseGeneration) throw Object.assign(new Error("base generation unknown"), { code: 9, details: "base generation unknown" });
      const peers = delta ? new Map(calls.held!.peers) : new Map<string, MeshSpec["peers"][number]>();
      for (const k of req.removedPeerKeys) peers.delete(k);
      for (const p of req.spec!.peers) peers.set(p.publicKey, p);
      calls.held = { generation: req.generation, peers };
      calls.mesh.push({ ...req.spec!, peers: [...peers.values()] });
      calls.deltas.push({ delta, bytes: bytes.length });
      return create(ApplyMeshResponseSchema, ok);
    },
    applyFirewall: async (req: { spec: FirewallSpec }) => (calls.firewall.push(req.spec), create(ApplyFirewallResponseSchema, ok)),
    readMesh: async () =>
      create(ReadMeshResponseSchema, {
        exists: true,
        up: true,
        interface: live.mesh?.interface ?? "",
        listenPort: live.mesh?.listenPort ?? 0,
        publicKey: live.mesh ? pub : "",
        peers: (live.mesh?.peers ?? []).map((p) => ({ publicKey: p.publicKey, allowedIps: p.allowedIps, endpoint: p.endpoint })),
      }),
    readFirewall: async () => create(ReadFirewallResponseSchema, { tableExists: live.firewall !== undefined, chains: (live.firewall?.chains ?? []) as never }),
  } as unknown as PrivClient;
}

const { privateKey, publicKey: pub } = generateWireGuardKeyPair();

async function setup(over: Record<string, unknown> = {}, live: { mesh?: MeshSpec; firewall?: FirewallSpec } = {}) {
  const data = mkdtempSync(join(dir, "node-"));
  const config = parseConfig({ api: "http://127.0.0.1:1", data_dir: data, policy: { default: "allow" }, ...over });
  const store = await DesiredStateStore.open(data);
  const calls: Calls = { mesh: [], deltas: [], firewall: [], failMesh: 0, held: undefined };
  const kernel = new KernelReconciler({
    priv: recordingPriv(calls, live),
    store,
    config,
    local: () => ({ nodeId: "n_local", meshIp: "10.100.0.1", privateKey }),
    health: new HealthRegistry(),
    log: createLogger({ name: "test", level: "silent" }),
    signal: ac.signal,
    now: () => Date.now(),
  });
  const settle = async () => {
    await kernel.idle();
    await store.flush();
  };
  return { store, kernel, calls, settle };
}

const add = (store: DesiredStateStore, p: Peer) => store.update((s) => ((s.peers[p.id] = p), [{ peers: [p.id] }]));

describe("KernelReconciler", () => {
  it("start-up sends both targets; a peer event sends the mesh only; an unchanged target is not sent again", async () => {
    const { store, kernel, calls, settle } = await setup();
    kernel.trigger("startup");
    await settle();
    expect([calls.mesh.length, calls.firewall.length]).toEqual([1, 1]);

    const a = peer(1);
    add(store, a);
    await settle();
    expect([calls.mesh.length, calls.firewall.length]).toEqual([2, 1]);
    expect(calls.mesh.at(-1)!.peers.map((p) => p.publicKey)).toEqual([a.public_key]);

    // Nothing changed: no call at all. A burst of events: one apply.
    store.update(() => undefined);
    await settle();
    for (let i = 2; i < 40; i++) add(store, peer(i));
    await settle();
    expect(calls.mesh.length).toBeLessThanOrEqual(4);
    expect(calls.mesh.at(-1)!.peers).toHaveLength(39);
    expect(calls.firewall.length).toBe(1);
  });

  it("a policy that changes the rules sends the firewall; privhelper coming back sends both again", async () => {
    const { store, kernel, calls, settle } = await setup();
    kernel.trigger("startup");
    await settle();
    store.update((s) => ((s.policies = [{ id: "p", rules: [{ src: "*", dst: "n_local", port: 22, protocol: "tcp", action: "allow" }] }]), ["policies"]));
    await settle();
    expect([calls.mesh.length, calls.firewall.length]).toEqual([1, 2]);
    expect(JSON.stringify(calls.firewall.at(-1))).toContain('"portFrom":22');
    kernel.trigger("privhelper_restarted");
    await settle();
    expect([calls.mesh.length, calls.firewall.length]).toEqual([2, 3]);
  });

  it("a failed apply is sent again by the next converge, with what changed meanwhile", async () => {
    const { store, kernel, calls, settle } = await setup();
    kernel.trigger("startup");
    await settle();
    calls.failMesh = 1;
    add(store, peer(1));
    await settle();
    expect(calls.mesh.length).toBe(1);
    add(store, peer(2));
    await settle();
    expect(calls.mesh.at(-1)!.peers).toHaveLength(2);
  });

  it("after the first apply only what changed travels; a privhelper that lost its base gets the whole target", async () => {
    const { store, kernel, calls, settle } = await setup();
    for (let i = 1; i <= 200; i++) add(store, peer(i));
    kernel.trigger("startup");
    await settle();
    expect(calls.deltas.at(-1)).toMatchObject({ delta: false });
    const whole = calls.deltas.at(-1)!.bytes;
    add(store, peer(201));
    await settle();
    store.update((s) => (delete s.peers.n_7, [{ peers: ["n_7"] }]));
    await settle();
    expect(calls.deltas.slice(-2).every((d) => d.delta && d.bytes < whole / 50)).toBe(true);
    expect(calls.mesh.at(-1)!.peers).toHaveLength(200);
    expect(calls.mesh.at(-1)!.peers.map((p) => p.publicKey)).not.toContain(store.state.peers.n_7?.public_key ?? "gone");

    calls.held = undefined; // privhelper restarted without the agent noticing yet
    add(store, peer(202));
    await settle();
    expect(calls.deltas.at(-1)).toMatchObject({ delta: false });
    expect(calls.mesh.at(-1)!.peers).toHaveLength(201);
    expect(calls.mesh.at(-1)!.peers.map((p) => p.publicKey).sort()).toEqual(Object.values(store.state.peers).map((p) => p.public_key).sort());
  });

  it("a read-back that matches the target applies nothing; one that differs is corrected", async () => {
    // Policy off: no firewall table is wanted and none is live, so only the mesh is compared.
    const off = { policy: { enabled: false } };
    const { store, kernel, calls, settle } = await setup(off);
    kernel.trigger("startup");
    add(store, peer(1));
    await settle();
    const sent = calls.mesh.at(-1)!;
    const matching = await setup(off, { mesh: sent });
    add(matching.store, { ...store.state.peers.n_1! });
    const inSync = await matching.kernel.converge(true, "cycle");
    expect(inSync.corrections).toEqual([]);
    expect([matching.calls.mesh.length, matching.calls.firewall.length]).toEqual([0, 0]);

    const drifted = await setup(off, { mesh: { ...sent, peers: [] } as MeshSpec });
    add(drifted.store, { ...store.state.peers.n_1! });
    const fixed = await drifted.kernel.converge(true, "cycle");
    expect(fixed.corrections.map((c) => c.type)).toEqual(["peer_added"]);
    expect([drifted.calls.mesh.length, drifted.calls.firewall.length]).toEqual([1, 0]);
  });
});
