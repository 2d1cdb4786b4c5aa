// Pure: desired mesh + live device → the minimal plan. No I/O, so every case is unit-tested.
//
// The WireGuard part is one WgChange (device fields, peers to upsert, peers to remove),
// which a backend applies in a single step (os/wg.ts, os/uapi.ts).
import type { LiveLink } from "../os/ip.js";
import type { WgChange, WgDevice, WgLiveDevice, WgPeer } from "../os/wg.js";

export interface DesiredMesh extends WgDevice {
  interface: string;
  /** 0 = leave the kernel's MTU alone. */
  mtu: number;
  /** Canonical CIDRs, sorted. */
  addresses: string[];
}

export interface Live {
  link: LiveLink | undefined;
  wg: WgLiveDevice | undefined;
  /** IPv4 routes via the link, when they were read together with it. */
  routes?: string[];
}

export interface Step {
  kind: string;
  detail: string;
}

export interface MeshPlan {
  steps: Step[];
  create: boolean;
  mtu: number | undefined;
  wg: WgChange | undefined;
  addAddresses: string[];
  removeAddresses: string[];
  up: boolean;
}

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

const none: readonly string[] = [];

/** Field names that differ; an empty desired endpoint means "don't care" (it roams). */
export function peerChanges(want: WgPeer, live: WgPeer): readonly string[] {
  // The common case — nothing differs — allocates nothing: at 1,000 peers this runs 1,000
  // times per apply.
  const psk = want.presharedKey !== live.presharedKey;
  const endpoint = want.endpoint !== "" && want.endpoint !== live.endpoint;
  const ips = !sameList(want.allowedIps, live.allowedIps);
  const keepalive = want.keepalive !== live.keepalive;
  if (!psk && !endpoint && !ips && !keepalive) return none;
  const out: string[] = [];
  if (psk) out.push("preshared_key");
  if (endpoint) out.push("endpoint");
  if (ips) out.push("allowed_ips");
  if (keepalive) out.push("persistent_keepalive");
  return out;
}

export function diffMesh(want: DesiredMesh, live: Live): MeshPlan {
  const steps: Step[] = [];
  const create = live.link === undefined;
  if (create) steps.push({ kind: "create_interface", detail: want.interface });

  const mtu = want.mtu !== 0 && live.link?.mtu !== want.mtu ? want.mtu : undefined;
  if (mtu !== undefined) steps.push({ kind: "set_mtu", detail: String(mtu) });

  const wg = live.wg ?? { privateKey: "", publicKey: "", listenPort: 0, peers: [] };
  const change: WgChange = { upsert: [], remove: [] };
  if (wg.privateKey !== want.privateKey) {
    change.privateKey = want.privateKey;
    steps.push({ kind: "set_private_key", detail: "" });
  }
  if (wg.listenPort !== want.listenPort) {
    change.listenPort = want.listenPort;
    steps.push({ kind: "set_listen_port", detail: String(want.listenPort) });
  }
  const liveByKey = new Map<string, WgPeer>();
  for (const p of wg.peers) liveByKey.set(p.publicKey, p);
  let matched = 0;
  for (const p of want.peers) {
    const l = liveByKey.get(p.publicKey);
    if (!l) {
      change.upsert.push(p);
      steps.push({ kind: "add_peer", detail: p.publicKey });
      continue;
    }
    matched++;
    const fields = peerChanges(p, l);
    if (fields.length > 0) {
      change.upsert.push(p);
      steps.push({ kind: "update_peer", detail: `${p.publicKey} ${fields.join(",")}` });
    }
  }
  // Public keys are unique on both sides, so every live peer was matched unless some live
  // peer is not wanted; only then is the wanted set built.
  if (matched < wg.peers.length) {
    const wanted = new Set(want.peers.map((p) => p.publicKey));
    for (const p of wg.peers) {
      if (wanted.has(p.publicKey)) continue;
      change.remove.push(p.publicKey);
      steps.push({ kind: "remove_peer", detail: p.publicKey });
    }
  }
  const wgChange = change.upsert.length + change.remove.length > 0 || change.privateKey !== undefined || change.listenPort !== undefined ? change : undefined;

  const liveAddrs = new Set(live.link?.addresses ?? []);
  const addAddresses = want.addresses.filter((a) => !liveAddrs.has(a));
  const wantAddrs = new Set(want.addresses);
  const removeAddresses = [...liveAddrs].filter((a) => !wantAddrs.has(a));
  for (const a of addAddresses) steps.push({ kind: "add_address", detail: a });
  for (const a of removeAddresses) steps.push({ kind: "remove_address", detail: a });

  const up = !live.link?.up;
  if (up) steps.push({ kind: "link_up", detail: want.interface });
  return { steps, create, mtu, wg: wgChange, addAddresses, removeAddresses, up };
}

/** The live state expressed as a spec, so a rollback is just another apply. */
export function liveAsDesired(name: string, live: Live): DesiredMesh | undefined {
  if (!live.link || !live.wg) return undefined;
  return {
    interface: name,
    privateKey: live.wg.privateKey,
    listenPort: live.wg.listenPort,
    mtu: live.link.mtu,
    addresses: live.link.addresses,
    peers: live.wg.peers.map(({ publicKey, presharedKey, endpoint, allowedIps, keepalive }) => ({ publicKey, presharedKey, endpoint, allowedIps, keepalive })),
  };
}
