// Allow-list validation of what crosses the socket (docs/architecture.md#privhelper). Values are parsed and
// re-serialised: what reaches a tool is text privhelper produced, never the caller's bytes.
import type { MeshSpec } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../proto/lib/errors.js";
import { isKey32 } from "../proto/lib/keys.js";
import { checkMeshPeer, checkUniquePeers, meshLimits as limits } from "../proto/lib/mesh-peer.js";
import { parseCidr } from "../proto/lib/net.js";
import { isAllowedInterface, type PrivConfig } from "./config.js";
import type { DesiredMesh } from "./mesh/diff.js";

/** Every problem of a request, reported at once as INVALID_ARGUMENT (the first 20 spelled out). */
export class Issues {
  readonly list: string[] = [];
  add = (path: string, msg: string): number => this.list.push(`${path}: ${msg}`);
  throwIfAny(): void {
    const more = this.list.length > 20 ? `\n  … and ${this.list.length - 20} more` : "";
    if (this.list.length > 0) throw new PlexdError("invalid_argument", `invalid request:\n  ${this.list.slice(0, 20).join("\n  ")}${more}`);
  }
}

/** Only names from the root-owned config (which checked their syntax) pass. */
export function checkInterface(cfg: PrivConfig, name: string, issues: Issues, path = "interface"): string {
  if (!isAllowedInterface(cfg, name)) issues.add(path, `${JSON.stringify(name.slice(0, 40))} is not an interface plexd may manage (allowed: ${[...cfg.allowedInterfaces, ...(cfg.bridge ? [cfg.bridge.userAccess, `${cfg.bridge.s2sPrefix}*`] : [])].filter((n) => n !== "").join(", ")})`);
  return name;
}

/** The spec's own fields and peers (a delta's are checked again once merged onto the device's). */
export function validateMeshSpec(cfg: PrivConfig, spec: MeshSpec | undefined): DesiredMesh {
  const issues = new Issues();
  if (!spec) throw new PlexdError("invalid_argument", "invalid request:\n  spec: required");
  const s = spec;
  const iface = checkInterface(cfg, s.interface, issues, "spec.interface");
  if (!isKey32(s.privateKey)) issues.add("spec.private_key", "must be a 32-byte base64 key");
  if (s.listenPort < 1 || s.listenPort > 65535) issues.add("spec.listen_port", "must be 1-65535");
  if (s.mtu !== 0 && (s.mtu < 1280 || s.mtu > 9000)) issues.add("spec.mtu", "must be 0 or 1280-9000");
  if (s.addresses.length > limits.addresses) issues.add("spec.addresses", `at most ${limits.addresses}`);
  const addresses = s.addresses.map((a, i) => {
    const c = parseCidr(a, false);
    if (!c) issues.add(`spec.addresses[${i}]`, "must be an IPv4 or IPv6 CIDR");
    return c?.cidr ?? "";
  });
  if (new Set(addresses).size !== addresses.length) issues.add("spec.addresses", "duplicates");
  if (s.peers.length > limits.peers) issues.add("spec.peers", `at most ${limits.peers} peers (got ${s.peers.length})`);
  issues.throwIfAny();
  // Only the mesh interface may carry the full tunnel: a bridge device's peers never get a default route.
  const mesh = iface === cfg.meshInterface;
  const peers = s.peers.map((p, i) => checkMeshPeer(p, mesh ? cfg : { ...cfg, allowDefaultRoute: false }, `spec.peers[${i}]`, issues.add));
  checkUniquePeers(peers, issues.add, (i) => `spec.peers[${i}]`);
  issues.throwIfAny();
  const fwmark = cfg.allowDefaultRoute && mesh ? cfg.fullTunnelTable : 0; // the full tunnel's table number marks the device's own packets
  return { interface: iface, privateKey: s.privateKey, listenPort: s.listenPort, fwmark, mtu: s.mtu, addresses: addresses.sort(), peers };
}
