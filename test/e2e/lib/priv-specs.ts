// Request builders for privhelper abuse tests: large meshes whose versions overlap in known
// ways, large firewalls, STUN Binding requests. Keys are random bytes (any 32 bytes are a
// WireGuard key); allowed IPs are unique per (peer, version), so two versions of a mesh never
// claim one CIDR for different peers and a half-applied mix stays recognisable.
import { createHash, randomBytes } from "node:crypto";
import { Protocol, RuleAction } from "../../../proto/gen/plexd/priv/v1/priv_pb.js";

export const newKey = (): string => randomBytes(32).toString("base64");

export interface Peer {
  publicKey: string;
  presharedKey: string;
  endpoint: string;
  allowedIps: string[];
  persistentKeepalive: number;
}

/** The mesh's own address; peers' allowed IPs lie outside it (no kernel prefix route covers them). */
export const meshAddress = "10.99.0.1/16";
export const meshPort = 51820;

/**
 * Peer `i` in version `v`: one /32 in 10.(100+20v+i/256).(i%256).1, an endpoint in
 * TEST-NET-2 (never routed from the test namespaces), and a PSK on every third peer.
 */
export function peerVersion(key: string, psk: string, i: number, v: 0 | 1): Peer {
  if (i >= 20 * 256) throw new Error("peer index too large for the address plan");
  return {
    publicKey: key,
    presharedKey: i % 3 === 0 ? psk : "",
    endpoint: `198.51.100.${(i % 250) + 1}:${51000 + i + v * 7}`,
    allowedIps: [`10.${100 + 20 * v + (i >> 8)}.${i & 255}.1/32`],
    persistentKeepalive: 0,
  };
}

export interface MeshPair {
  privateKey: string;
  old: Peer[];
  new: Peer[];
  counts: { kept: number; updated: number; removed: number; added: number };
}

/**
 * Two peer sets of `size` peers each: OLD is peers [0, size), NEW is peers [removed, size +
 * removed). Of the peers in both, the first `updated` change allowed IPs and endpoint.
 */
export function overlappingMeshes(size: number, removed: number, updated: number): MeshPair {
  const n = size + removed;
  const keys = Array.from({ length: n }, newKey);
  const psks = Array.from({ length: n }, newKey);
  const old = Array.from({ length: size }, (_, i) => peerVersion(keys[i]!, psks[i]!, i, 0));
  const next = Array.from({ length: size }, (_, j) => {
    const i = j + removed;
    return peerVersion(keys[i]!, psks[i]!, i, i < removed + updated ? 1 : 0);
  });
  return { privateKey: newKey(), old, new: next, counts: { kept: size - removed - updated, updated, removed, added: removed } };
}

export function meshSpec(iface: string, privateKey: string, peers: readonly Peer[]) {
  return { interface: iface, privateKey, listenPort: meshPort, addresses: [meshAddress], mtu: 1420, peers: [...peers] };
}

const ruleId = (variant: number, what: string): string => createHash("sha256").update(`${variant}/${what}`).digest("hex").slice(0, 16);

/**
 * A firewall of `n` accept rules in plexd-mesh, reached from the input chain for traffic on
 * the mesh interface. Variant 1 shifts the rule set by n/2 (half the rules are the same
 * ones) and adds a forward chain, so the two differ in chains and in rules.
 */
export function firewallSpec(iface: string, n: number, variant: 0 | 1) {
  const first = variant === 0 ? 0 : n >> 1;
  const mesh = Array.from({ length: n }, (_, k) => {
    const i = first + k;
    return { id: ruleId(0, `peer${i}`), srcCidr: `10.${100 + (i >> 8)}.${i & 255}.1/32`, protocol: Protocol.TCP, portFrom: 1024 + (i % 60_000), action: RuleAction.ACCEPT };
  });
  const input = [
    { id: ruleId(variant, "est"), iifname: iface, ctEstablished: true, action: RuleAction.ACCEPT },
    { id: ruleId(variant, "jump"), iifname: iface, action: RuleAction.JUMP, jumpTarget: "plexd-mesh" },
    { id: ruleId(variant, "drop"), iifname: iface, action: RuleAction.DROP },
  ];
  const chains = [
    { name: "input", hook: "input", rules: input },
    { name: "plexd-mesh", hook: "", rules: mesh },
    ...(variant === 1 ? [{ name: "forward", hook: "forward", rules: [{ id: ruleId(variant, "fwd"), iifname: iface, oifname: iface, action: RuleAction.ACCEPT }] }] : []),
  ];
  return { chains };
}

/** RFC 5389 Binding request: type 0x0001, length 0, magic cookie, random transaction id. */
export function stunBinding(): Uint8Array {
  return new Uint8Array(Buffer.concat([Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), randomBytes(12)]));
}

/** A small seeded PRNG (mulberry32): a failing run can be repeated with PLEXD_E2E_SEED. */
export function seededRandom(label: string): { seed: number; next: () => number; int: (max: number) => number } {
  const seed = Number(process.env.PLEXD_E2E_SEED ?? randomBytes(4).readUInt32LE(0));
  console.log(`[${label}] random seed ${seed} (repeat with PLEXD_E2E_SEED=${seed})`);
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { seed, next, int: (max: number) => Math.floor(next() * max) };
}
