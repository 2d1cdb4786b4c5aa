import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ApplyMeshRequestSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { AppliedSpecs } from "./base.js";

const key = (n: number) => Buffer.alloc(32, n).toString("base64");
const peer = (n: number, endpoint = "192.0.2.1:51820") => ({ publicKey: key(n), endpoint, allowedIps: [`10.100.0.${n}/32`] });
const req = (generation: bigint, peers: ReturnType<typeof peer>[], over: { baseGeneration?: bigint; removedPeerKeys?: string[] } = {}) =>
  create(ApplyMeshRequestSchema, { spec: { interface: "plexd0", privateKey: key(1), listenPort: 51820, peers }, generation, ...over });
const endpoints = (a: AppliedSpecs, r: ReturnType<typeof req>) => a.resolve(r)!.peers.map((p) => `${p.publicKey.slice(0, 2)} ${p.endpoint}`);

describe("AppliedSpecs", () => {
  it("chains deltas: each one resolves against the peer set remembered last", () => {
    const a = new AppliedSpecs();
    const whole = req(1n, [peer(2), peer(3), peer(4)]);
    a.remember("plexd0", 1n, a.resolve(whole)!);
    const d2 = req(2n, [peer(3, "198.51.100.3:1")], { baseGeneration: 1n, removedPeerKeys: [key(4)] });
    const s2 = a.resolve(d2)!;
    expect(s2.peers.map((p) => [p.publicKey, p.endpoint])).toEqual([
      [key(2), "192.0.2.1:51820"],
      [key(3), "198.51.100.3:1"],
    ]);
    a.remember("plexd0", 2n, s2);
    const d3 = req(3n, [peer(5)], { baseGeneration: 2n });
    expect(a.resolve(d3)!.peers.map((p) => p.publicKey)).toEqual([key(2), key(3), key(5)]);
  });

  it("a delta that was resolved but not applied leaves the remembered set as it was", () => {
    const a = new AppliedSpecs();
    a.remember("plexd0", 1n, a.resolve(req(1n, [peer(2), peer(3)]))!);
    // Resolved, then refused (never remembered): the base stays generation 1 with both peers.
    a.resolve(req(2n, [], { baseGeneration: 1n, removedPeerKeys: [key(2)] }));
    // A whole spec remembered next is kept as stated, not as the refused delta's peer map.
    const whole = req(5n, [peer(7)]);
    a.remember("plexd0", 5n, a.resolve(whole)!);
    expect(endpoints(a, req(6n, [], { baseGeneration: 5n }))).toEqual([`${key(7).slice(0, 2)} 192.0.2.1:51820`]);
  });

  it("refuses a delta on a generation it does not hold", () => {
    const a = new AppliedSpecs();
    a.remember("plexd0", 1n, a.resolve(req(1n, [peer(2)]))!);
    expect(() => a.resolve(req(3n, [], { baseGeneration: 2n }))).toThrow(/not the last one applied/);
    a.forget("plexd0");
    expect(() => a.resolve(req(3n, [], { baseGeneration: 1n }))).toThrow(/none/);
  });
});
