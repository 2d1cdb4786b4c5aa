// Pure: desired mesh + live device → the minimal plan. No I/O, so every case is unit-tested.
//
// The WireGuard part is always ONE `wg` invocation: `addconf` with only the added/changed
// peers when nothing has to go, else `syncconf` with the full desired config (it removes
// peers missing from the config, which the config format cannot express otherwise).
import type { LiveLink } from "../os/ip.js";
import { renderConfig, type WgDevice, type WgLiveDevice, type WgPeer, type WgWriteMode } from "../os/wg.js";

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
}

export interface Step {
  kind: string;
  detail: string;
}

export interface MeshPlan {
  steps: Step[];
  create: boolean;
  mtu: number | undefined;
  wg: { mode: WgWriteMode; config: string } | undefined;
  addAddresses: string[];
  removeAddresses: string[];
  up: boolean;
}

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Field names that differ; an empty desired endpoint means "don't care" (it roams). */
export function peerChanges(want: WgPeer, live: WgPeer): string[] {
  const out: string[] = [];
  if (want.presharedKey !== live.presharedKey) out.push("preshared_key");
  if (want.endpoint !== "" && want.endpoint !== live.endpoint) out.push("endpoint");
  if (!sameList(want.allowedIps, live.allowedIps)) out.push("allowed_ips");
  if (want.keepalive !== live.keepalive) out.push("persistent_keepalive");
  return out;
}

export function diffMesh(want: DesiredMesh, live: Live): MeshPlan {
  const steps: Step[] = [];
  const create = live.link === undefined;
  if (create) steps.push({ kind: "create_interface", detail: want.interface });

  const mtu = want.mtu !== 0 && live.link?.mtu !== want.mtu ? want.mtu : undefined;
  if (mtu !== undefined) steps.push({ kind: "set_mtu", detail: String(mtu) });

  const wg = live.wg ?? { privateKey: "", publicKey: "", listenPort: 0, peers: [] };
  const device: { privateKey?: string; listenPort?: number } = {};
  if (wg.privateKey !== want.privateKey) {
    device.privateKey = want.privateKey;
    steps.push({ kind: "set_private_key", detail: "" });
  }
  if (wg.listenPort !== want.listenPort) {
    device.listenPort = want.listenPort;
    steps.push({ kind: "set_listen_port", detail: String(want.listenPort) });
  }
  const liveByKey = new Map(wg.peers.map((p) => [p.publicKey, p]));
  const changed: WgPeer[] = [];
  for (const p of want.peers) {
    const l = liveByKey.get(p.publicKey);
    if (!l) {
      changed.push(p);
      steps.push({ kind: "add_peer", detail: p.publicKey });
      continue;
    }
    const fields = peerChanges(p, l);
    if (fields.length > 0) {
      changed.push(p);
      steps.push({ kind: "update_peer", detail: `${p.publicKey} ${fields.join(",")}` });
    }
  }
  const wanted = new Set(want.peers.map((p) => p.publicKey));
  const removed = wg.peers.filter((p) => !wanted.has(p.publicKey));
  for (const p of removed) steps.push({ kind: "remove_peer", detail: p.publicKey });

  let wgWrite: MeshPlan["wg"];
  if (removed.length > 0) {
    wgWrite = { mode: "syncconf", config: fullConfig(want) };
  } else if (changed.length > 0 || device.privateKey !== undefined || device.listenPort !== undefined) {
    wgWrite = { mode: "addconf", config: renderConfig(device, changed, true) };
  }

  const liveAddrs = new Set(live.link?.addresses ?? []);
  const addAddresses = want.addresses.filter((a) => !liveAddrs.has(a));
  const wantAddrs = new Set(want.addresses);
  const removeAddresses = [...liveAddrs].filter((a) => !wantAddrs.has(a));
  for (const a of addAddresses) steps.push({ kind: "add_address", detail: a });
  for (const a of removeAddresses) steps.push({ kind: "remove_address", detail: a });

  const up = !live.link?.up;
  if (up) steps.push({ kind: "link_up", detail: want.interface });
  return { steps, create, mtu, wg: wgWrite, addAddresses, removeAddresses, up };
}

/** The whole device as one config; syncconf needs the interface fields or they reset. */
export function fullConfig(d: DesiredMesh): string {
  return renderConfig({ privateKey: d.privateKey, listenPort: d.listenPort }, d.peers, true);
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
