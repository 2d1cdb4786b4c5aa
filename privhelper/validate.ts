// Allow-list validation of everything that crosses the socket (design.md 2). Values are
// parsed and re-serialised: what reaches a tool is text privhelper produced itself, never
// the caller's bytes.
import { isIPv6 } from "node:net";
import type { MeshSpec } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../proto/lib/errors.js";
import { isAllowedInterface, type PrivConfig } from "./config.js";
import type { DesiredMesh } from "./mesh/diff.js";
import type { WgPeer } from "./os/wg.js";

export const limits = { peers: 20_000, allowedIpsPerPeer: 1_024, addresses: 16 } as const;

export class Issues {
  readonly list: string[] = [];
  add(path: string, msg: string): void {
    this.list.push(`${path}: ${msg}`);
  }
  throwIfAny(): void {
    if (this.list.length === 0) return;
    const shown = this.list.slice(0, 20);
    const more = this.list.length > shown.length ? `\n  … and ${this.list.length - shown.length} more` : "";
    throw new PlexdError("invalid_argument", `invalid request:\n  ${shown.join("\n  ")}${more}`);
  }
}

const ifnameRe = /^[A-Za-z0-9_-]{1,15}$/;

export function checkInterface(cfg: PrivConfig, name: string, issues: Issues, path = "interface"): string {
  if (!ifnameRe.test(name) || !isAllowedInterface(cfg, name)) {
    issues.add(path, `${JSON.stringify(name.slice(0, 40))} is not an interface plexd may manage (allowed: ${cfg.allowedInterfaces.join(", ")})`);
  }
  return name;
}

/**
 * A 32-byte WireGuard key in standard base64. The pattern is the whole grammar of a
 * canonical encoding of 32 bytes (43 symbols, the last one carrying only 4 bits, then one
 * pad), so a match is already its own re-serialisation: no decode needed, which matters at
 * 20,000 peers per request.
 */
const keyRe = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
export function parseKey(s: string): string | undefined {
  return keyRe.test(s) ? s : undefined;
}

/** Dotted quad, decimal, no leading zeros; a character scan (it runs twice per peer). */
function parseIPv4(s: string): number[] | undefined {
  const parts: number[] = [];
  let n = 0;
  let digits = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46; // a virtual "." ends the last part
    if (c >= 48 && c <= 57) {
      if (digits === 1 && n === 0) return undefined; // leading zero
      n = n * 10 + (c - 48);
      if (++digits > 3 || n > 255) return undefined;
    } else if (c === 46 && digits > 0 && parts.length < 4) {
      parts.push(n);
      n = 0;
      digits = 0;
    } else return undefined;
  }
  return parts.length === 4 ? parts : undefined;
}

function parseIPv6(s: string): bigint | undefined {
  if (s.includes("%") || !isIPv6(s)) return undefined; // zone ids never belong in a spec
  // Expand to 8 groups (an embedded IPv4 tail becomes two groups).
  let text = s;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const b = parseIPv4(v4[1]);
    if (!b) return undefined;
    text = text.slice(0, -v4[1].length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  if (groups.length !== 8) return undefined;
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function formatIPv6(v: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => ((v >> BigInt(16 * (7 - i))) & 0xffffn).toString(16));
  // RFC 5952: compress the longest run (≥ 2) of zero groups, the first one on ties.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

/** Parses an IP literal; returns its canonical text, or undefined. */
export function parseIp(s: string): { family: 4 | 6; text: string; value: bigint } | undefined {
  const v4 = parseIPv4(s);
  if (v4) return { family: 4, text: v4.join("."), value: v4.reduce((a, b) => (a << 8n) | BigInt(b), 0n) };
  const v6 = parseIPv6(s);
  return v6 === undefined ? undefined : { family: 6, text: formatIPv6(v6), value: v6 };
}

/** Parses a CIDR. `network` masks host bits (allowed IPs); otherwise they are kept (addresses). */
export function parseCidr(s: string, network: boolean): string | undefined {
  const slash = s.indexOf("/");
  const bitsText = s.slice(slash + 1);
  if (slash < 0 || !/^\d{1,3}$/.test(bitsText) || (bitsText.length > 1 && bitsText.startsWith("0"))) return undefined;
  const bits = Number(bitsText);
  // IPv4 without BigInt: validation runs per allowed IP of up to 20,000 peers.
  const v4 = parseIPv4(s.slice(0, slash));
  if (v4) {
    if (bits > 32) return undefined;
    if (!network) return `${v4.join(".")}/${bits}`;
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    const v = ((((v4[0]! << 24) | (v4[1]! << 16) | (v4[2]! << 8) | v4[3]!) >>> 0) & mask) >>> 0;
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}/${bits}`;
  }
  const v6 = parseIPv6(s.slice(0, slash));
  if (v6 === undefined || bits > 128) return undefined;
  const v = network ? v6 & (((1n << 128n) - 1n) ^ ((1n << BigInt(128 - bits)) - 1n)) : v6;
  return `${formatIPv6(v)}/${bits}`;
}

/** host:port with an IP literal host ([v6]:port); hostnames are refused (no DNS in privhelper). */
export function parseEndpoint(s: string): string | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535 || (m[3]!.length > 1 && m[3]!.startsWith("0"))) return undefined;
  const ip = parseIp(m[1] ?? m[2] ?? "");
  if (!ip || (m[1] !== undefined) !== (ip.family === 6)) return undefined;
  return ip.family === 6 ? `[${ip.text}]:${port}` : `${ip.text}:${port}`;
}

type PeerInput = Pick<MeshSpec["peers"][number], "publicKey" | "presharedKey" | "endpoint" | "persistentKeepalive" | "allowedIps">;
interface Memo {
  /** The message checked: a delta's base peers are these very objects again (mesh/base.ts). */
  src: PeerInput;
  input: PeerInput;
  out: WgPeer;
}

/**
 * The peers of the last valid spec, by public key: the agent sends the whole peer set on
 * every change, so nearly every peer is byte-for-byte what was checked a moment ago. A
 * peer whose fields are identical reuses that result (the cross-peer checks still run);
 * anything else is parsed in full. Only a memo of input: nothing here describes the kernel.
 */
let lastPeers = new Map<string, Memo>();

const sameInput = (a: PeerInput, b: PeerInput): boolean =>
  a.publicKey === b.publicKey &&
  a.presharedKey === b.presharedKey &&
  a.endpoint === b.endpoint &&
  a.persistentKeepalive === b.persistentKeepalive &&
  a.allowedIps.length === b.allowedIps.length &&
  a.allowedIps.every((x, i) => x === b.allowedIps[i]);

export function validateMeshSpec(cfg: PrivConfig, spec: MeshSpec | undefined): DesiredMesh {
  const issues = new Issues();
  if (!spec) {
    issues.add("spec", "required");
    issues.throwIfAny();
  }
  const s = spec as MeshSpec;
  const iface = checkInterface(cfg, s.interface, issues, "spec.interface");
  const privateKey = parseKey(s.privateKey);
  if (!privateKey) issues.add("spec.private_key", "must be a 32-byte base64 key");
  if (s.listenPort < 1 || s.listenPort > 65535) issues.add("spec.listen_port", "must be 1-65535");
  if (s.mtu !== 0 && (s.mtu < 1280 || s.mtu > 9000)) issues.add("spec.mtu", "must be 0 or 1280-9000");
  if (s.addresses.length > limits.addresses) issues.add("spec.addresses", `at most ${limits.addresses}`);
  const addresses = s.addresses.map((a, i) => {
    const c = parseCidr(a, false);
    if (!c) issues.add(`spec.addresses[${i}]`, "must be an IPv4 or IPv6 CIDR");
    return c ?? "";
  });
  if (new Set(addresses).size !== addresses.length) issues.add("spec.addresses", "duplicates");
  if (s.peers.length > limits.peers) {
    issues.add("spec.peers", `at most ${limits.peers} peers (got ${s.peers.length})`);
    issues.throwIfAny();
  }
  const keys = new Set<string>();
  const owners = new Map<string, number>();
  const memo = new Map<string, Memo>();
  // At 1,000 peers this runs 1,000 times per apply: the reuse path allocates nothing per peer.
  const unclaimed = (cidrs: readonly string[]): boolean => {
    for (const c of cidrs) if (owners.has(c)) return false;
    return true;
  };
  const peers = s.peers.map((p, i): WgPeer => {
    const known = lastPeers.get(p.publicKey);
    if (known !== undefined && (known.src === p || sameInput(known.input, p)) && !keys.has(p.publicKey) && unclaimed(known.out.allowedIps)) {
      keys.add(p.publicKey);
      for (const c of known.out.allowedIps) owners.set(c, i);
      memo.set(p.publicKey, known.src === p ? known : { ...known, src: p });
      return known.out;
    }
    const at = (field: string) => `spec.peers[${i}].${field}`; // built only for a problem
    const publicKey = parseKey(p.publicKey);
    if (!publicKey) issues.add(at("public_key"), "must be a 32-byte base64 key");
    else if (keys.has(publicKey)) issues.add(at("public_key"), "duplicate peer");
    else keys.add(publicKey);
    const psk = p.presharedKey === "" ? "" : parseKey(p.presharedKey);
    if (psk === undefined) issues.add(at("preshared_key"), "must be empty or a 32-byte base64 key");
    const endpoint = p.endpoint === "" ? "" : parseEndpoint(p.endpoint);
    if (endpoint === undefined) issues.add(at("endpoint"), "must be empty or IP:port / [IPv6]:port");
    if (p.persistentKeepalive > 65535) issues.add(at("persistent_keepalive"), "must be 0-65535");
    if (p.allowedIps.length > limits.allowedIpsPerPeer) issues.add(at("allowed_ips"), `at most ${limits.allowedIpsPerPeer}`);
    const allowedIps = p.allowedIps.map((a, j) => {
      const c = parseCidr(a, true);
      if (!c) issues.add(at(`allowed_ips[${j}]`), "must be an IPv4 or IPv6 CIDR");
      else if (owners.has(c) && owners.get(c) !== i) issues.add(at(`allowed_ips[${j}]`), `${c} is also claimed by peers[${owners.get(c)}]`);
      else owners.set(c, i);
      return c ?? "";
    });
    const out = {
      publicKey: publicKey ?? "",
      presharedKey: psk ?? "",
      endpoint: endpoint ?? "",
      allowedIps: allowedIps.length < 2 ? allowedIps : [...new Set(allowedIps)].sort(),
      keepalive: p.persistentKeepalive,
    };
    memo.set(p.publicKey, { src: p, input: { publicKey: p.publicKey, presharedKey: p.presharedKey, endpoint: p.endpoint, persistentKeepalive: p.persistentKeepalive, allowedIps: [...p.allowedIps] }, out });
    return out;
  });
  issues.throwIfAny();
  lastPeers = memo;
  return { interface: iface, privateKey: privateKey ?? "", listenPort: s.listenPort, mtu: s.mtu, addresses: addresses.sort(), peers };
}
