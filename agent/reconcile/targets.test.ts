// The incremental renderer must produce exactly what the pure definition does, after any
// sequence of store changes; and the bytes it sends must decode to that spec.
import { fromBinary } from "@bufbuild/protobuf";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ApplyMeshRequestSchema, type MeshSpec } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { parseConfig } from "../config/schema.js";
import type { Peer } from "../mesh/peer.js";
import { emptyDesiredState, type DesiredState, type Policy } from "../state/desired.js";
import { renderTargets, TargetRenderer, type LocalNode } from "./targets.js";

const local: LocalNode = { nodeId: "n_0", meshIp: "10.100.0.1", privateKey: Buffer.alloc(32, 1).toString("base64") };
// Distinct for every (i, salt): a collision would be admission's business, tested in mesh/admission.test.ts.
const key = (i: number, salt = 0) => createHash("sha256").update(`${i}:${salt}`).digest("base64");
const peer = (i: number, endpoint = "", salt = 0): Peer => ({ id: `n_${i}`, public_key: key(i, salt), mesh_ip: `10.100.0.${i + 1}`, endpoint, allowed_ips: [], psk: key(i, salt + 100) });

const sorted = (m: MeshSpec) => ({ ...m, peers: [...m.peers].sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1)) });
const decoded = (r: TargetRenderer) => fromBinary(ApplyMeshRequestSchema, r.mesh.requestBytes()).spec!;

type Op = { kind: "add" | "endpoint" | "rekey" | "remove"; i: number } | { kind: "policies"; policies: Policy[] } | { kind: "pull" };

const policyArb: fc.Arbitrary<Policy[]> = fc.array(
  fc.record({
    id: fc.constantFrom("p1", "p2"),
    rules: fc.array(
      fc.record({
        src: fc.constantFrom("n_0", "n_1", "n_3", "n_9", "*", "10.100.0.0/30", "10.100.0.4/31"),
        dst: fc.constantFrom("n_0", "n_2", "*", "10.100.0.0/24"),
        port: fc.constantFrom(0, 22),
        protocol: fc.constantFrom("", "tcp"),
        action: fc.constantFrom("allow", "deny"),
      }),
      { maxLength: 3 },
    ),
  }),
  { maxLength: 2 },
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constantFrom("add" as const, "endpoint" as const, "rekey" as const, "remove" as const), i: fc.integer({ min: 0, max: 9 }) }),
  fc.record({ kind: fc.constant("policies" as const), policies: policyArb }),
  fc.constant({ kind: "pull" as const }),
);

/** Applies an op to the state as the store's mutators do; returns the changed ids (undefined = whole). */
function apply(s: DesiredState, op: Op, n: number): Set<string> | undefined | "none" {
  switch (op.kind) {
    case "add":
      s.peers[`n_${op.i}`] = peer(op.i);
      return new Set([`n_${op.i}`]);
    case "endpoint": {
      const p = s.peers[`n_${op.i}`];
      if (!p) return "none";
      s.peers[p.id] = { ...p, endpoint: `192.0.2.${op.i + 1}:${5000 + n}` };
      return new Set([p.id]);
    }
    case "rekey": {
      const p = s.peers[`n_${op.i}`];
      if (!p) return "none";
      s.peers[p.id] = peer(op.i, p.endpoint, n + 1);
      return new Set([p.id]);
    }
    case "remove":
      delete s.peers[`n_${op.i}`];
      return new Set([`n_${op.i}`]);
    case "policies":
      s.policies = op.policies;
      return "none";
    case "pull":
      s.peers = Object.fromEntries(Object.values(s.peers).map((p) => [p.id, { ...p }]));
      return undefined;
  }
}

describe("TargetRenderer", () => {
  for (const def of ["deny", "allow"] as const) {
    it(`matches renderTargets after any sequence of changes (policy default ${def})`, () => {
      const config = parseConfig({ api: "http://127.0.0.1:1", data_dir: "/tmp/x", policy: { default: def } });
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 30 }), (ops) => {
          const state = emptyDesiredState();
          const r = new TargetRenderer();
          r.render(state, local, config, undefined);
          ops.forEach((op, n) => {
            const changed = apply(state, op, n);
            const policy = r.render(state, local, config, changed === "none" ? new Set() : changed);
            const want = renderTargets(state, local, config);
            expect(sorted(decoded(r))).toEqual(sorted(want.mesh));
            expect(sorted(r.mesh.spec())).toEqual(sorted(want.mesh));
            expect([...policy.visiblePeerIds].sort()).toEqual([...want.policy.visiblePeerIds].sort());
            expect(policy.firewall).toEqual(want.policy.firewall);
            expect(policy.invalidRules).toEqual(want.policy.invalidRules);
          });
        }),
        { numRuns: 150 },
      );
    });
  }

  it("a delta on any confirmed version, resolved as privhelper does, is the whole target", () => {
    const config = parseConfig({ api: "http://127.0.0.1:1", data_dir: "/tmp/x", policy: { default: "deny" } });
    fc.assert(
      fc.property(fc.array(fc.tuple(opArb, fc.boolean()), { maxLength: 30 }), (steps) => {
        const state = emptyDesiredState();
        const r = new TargetRenderer();
        r.render(state, local, config, undefined);
        let held = new Map(decoded(r).peers.map((p) => [p.publicKey, p]));
        let heldVersion = r.mesh.version;
        r.mesh.confirmed(heldVersion);
        steps.forEach(([op, confirm], n) => {
          const changed = apply(state, op, n);
          r.render(state, local, config, changed === "none" ? new Set() : changed);
          const req = fromBinary(ApplyMeshRequestSchema, r.mesh.deltaBytes(heldVersion));
          const peers = new Map(held);
          for (const k of req.removedPeerKeys) peers.delete(k);
          for (const p of req.spec!.peers) peers.set(p.publicKey, p);
          expect(sorted({ ...req.spec!, peers: [...peers.values()] })).toEqual(sorted(renderTargets(state, local, config).mesh));
          expect(req.generation - req.baseGeneration).toBe(BigInt(r.mesh.version - heldVersion));
          if (confirm) {
            held = peers;
            heldVersion = r.mesh.version;
            r.mesh.confirmed(heldVersion);
          }
        });
      }),
      { numRuns: 150 },
    );
  });

  it("bumps the mesh version only when the target changes, and the firewall version only when the rules do", () => {
    const config = parseConfig({ api: "http://127.0.0.1:1", data_dir: "/tmp/x", policy: { default: "allow" } });
    const state = emptyDesiredState();
    const r = new TargetRenderer();
    r.render(state, local, config, undefined);
    const [m0, f0] = [r.mesh.version, r.firewallVersion];
    state.peers.n_1 = peer(1);
    r.render(state, local, config, new Set(["n_1"]));
    expect(r.mesh.version).toBeGreaterThan(m0);
    expect(r.firewallVersion).toBe(f0);
    const m1 = r.mesh.version;
    r.render(state, local, config, new Set(["n_1"])); // the same object again
    r.render(state, local, config, new Set());
    expect(r.mesh.version).toBe(m1);
    state.policies = [{ id: "p", rules: [{ src: "*", dst: "n_0", port: 22, protocol: "tcp", action: "allow" }] }];
    r.render(state, local, config, new Set());
    expect(r.firewallVersion).toBeGreaterThan(f0);
    expect(r.mesh.version).toBe(m1);
  });
});
