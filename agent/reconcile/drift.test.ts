import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MeshSpecSchema, ReadMeshResponseSchema, WireGuardPeerSchema, WireGuardPeerStateSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { emptyDesiredState } from "../state/desired.js";
import { meshDrift, roamingGraceMs, stateDrift } from "./drift.js";

const key = (n: number): string => Buffer.alloc(32, n).toString("base64");
const sha = (b64: string): string => createHash("sha256").update(Buffer.from(b64, "base64")).digest("hex");
const now = Date.parse("2026-01-01T00:00:00Z");

const target = create(MeshSpecSchema, {
  interface: "plexd0",
  peers: [
    create(WireGuardPeerSchema, { publicKey: key(1), presharedKey: key(11), endpoint: "192.0.2.2:51820", allowedIps: ["10.100.1.2/32"] }),
    create(WireGuardPeerSchema, { publicKey: key(2), presharedKey: key(12), endpoint: "", allowedIps: ["10.100.1.3/32"] }),
  ],
});
const livePeer = (n: number, o: Partial<{ endpoint: string; allowedIps: string[]; psk: string; handshakeMs: number }> = {}) =>
  create(WireGuardPeerStateSchema, {
    publicKey: key(n),
    endpoint: o.endpoint ?? "192.0.2.2:51820",
    allowedIps: o.allowedIps ?? [`10.100.1.${n + 1}/32`],
    pskSha256: sha(o.psk ?? key(10 + n)),
    ...(o.handshakeMs === undefined ? {} : { lastHandshake: timestampFromMs(o.handshakeMs) }),
  });
const ids = (k: string): string | undefined => ({ [key(1)]: "n_b", [key(2)]: "n_c" })[k];

describe("meshDrift", () => {
  const cases: { name: string; live: ReturnType<typeof livePeer>[]; exists?: boolean; want: string[] }[] = [
    { name: "in sync", live: [livePeer(1, { handshakeMs: now }), livePeer(2, { endpoint: "198.51.100.1:1" })], want: [] },
    { name: "peer deleted behind our back", live: [livePeer(1, { handshakeMs: now })], want: ["peer_added peer n_c"] },
    { name: "rogue peer added", live: [livePeer(1, { handshakeMs: now }), livePeer(2), livePeer(9)], want: [`peer_removed peer key ${key(9).slice(0, 8)}…`] },
    { name: "allowed IPs and PSK changed", live: [livePeer(1, { handshakeMs: now, allowedIps: ["10.100.9.9/32"], psk: key(99) }), livePeer(2)], want: ["peer_updated peer n_b: allowed_ips, psk"] },
    { name: "endpoint differs but handshake is recent: roaming, not drift", live: [livePeer(1, { endpoint: "203.0.113.5:4000", handshakeMs: now - 10_000 }), livePeer(2)], want: [] },
    { name: "endpoint differs and no handshake for 180 s", live: [livePeer(1, { endpoint: "203.0.113.5:4000", handshakeMs: now - roamingGraceMs - 1 }), livePeer(2)], want: ["peer_updated peer n_b: endpoint"] },
    { name: "interface missing", live: [], exists: false, want: ["interface_recreated interface plexd0 was missing"] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const live = create(ReadMeshResponseSchema, { exists: c.exists ?? true, up: true, peers: c.live });
      expect(meshDrift(target, live, ids, now).map((d) => `${d.type} ${d.detail}`)).toEqual(c.want);
    });
  }
});

describe("stateDrift", () => {
  const peer = (id: string, n: number) => ({ id, public_key: key(n), mesh_ip: `10.100.1.${n}`, endpoint: "", allowed_ips: [`10.100.1.${n}/32`], psk: key(20 + n) });
  it("names what the event stream missed", () => {
    const store = { ...emptyDesiredState(), peers: { n_a: peer("n_a", 1), n_b: peer("n_b", 2) }, policies: [{ id: "old", rules: [] }], metadata: { env: "x" } };
    const doc = {
      peers: [peer("n_a", 1), { ...peer("n_b", 2), endpoint: "192.0.2.9:51820" }, peer("n_c", 3)],
      policies: [{ id: "new", rules: [] }],
      signing_keys: null,
      metadata: { env: "y" },
      data: [{ key: "k", content_type: "text/plain", payload: "v", version: 1, updated_at: "2026-01-01T00:00:00Z" }],
      secret_refs: [],
    };
    expect(stateDrift(store, doc, true).map((d) => `${d.type} ${d.detail}`)).toEqual([
      "peer_updated peer n_b: endpoint",
      "peer_added peer n_c",
      "policy_added policy new",
      "policy_removed policy old",
      "signing_keys_updated signing keys rotated",
      "metadata_updated 1 keys changed",
      "data_updated 1 keys changed",
    ]);
  });
});
