// IP addresses, CIDRs and host:port endpoints: the one implementation every process uses
// (privhelper's allow-lists, the agent's config and peer admission, mockcp, the CLI).
// Parsing is strict and the result canonical, so that text compared or sent on is text
// produced here, never the caller's bytes: IPv4 as dotted decimal without leading zeros,
// IPv6 as RFC 5952 text (WHATWG URL serialisation, which compresses the same way).
import { isIPv6 } from "node:net";

export type Family = 4 | 6;

export interface Ip {
  family: Family;
  /** Canonical text. */
  text: string;
  /** The address as an unsigned integer (32 or 128 bits). */
  value: bigint;
}

export interface Cidr extends Ip {
  bits: number;
  /** Canonical `text/bits`. */
  cidr: string;
}

function v6Value(canonical: string): bigint {
  const [head = "", tail] = canonical.split("::");
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function v6Text(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => ((value >> BigInt(16 * (7 - i))) & 0xffffn).toString(16));
  return new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1);
}

/** An IP literal (no zone id, no brackets), or undefined. */
export function parseIp(s: string): Ip | undefined {
  const v4 = parseIPv4Int(s);
  if (v4 !== undefined) return { family: 4, text: s, value: BigInt(v4) };
  if (s.includes("%") || !isIPv6(s)) return undefined;
  const text = new URL(`http://[${s}]/`).hostname.slice(1, -1);
  return { family: 6, text, value: v6Value(text) };
}

const width = (f: Family): number => (f === 4 ? 32 : 128);

/** Canonical text of a 4- or 16-byte address in network order (STUN, raw sockets), or undefined. */
export function ipFromBytes(b: Uint8Array): string | undefined {
  if (b.length === 4) return formatIPv4Int(((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0);
  if (b.length !== 16) return undefined;
  return v6Text(b.reduce((acc, x) => (acc << 8n) | BigInt(x), 0n));
}

function textOf(family: Family, value: bigint): string {
  if (family === 6) return v6Text(value);
  return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join(".");
}

/**
 * `addr/bits`. With `network` the host bits are cleared (routes, allowed IPs, rule matches);
 * without, they are kept (an interface address such as 10.100.0.1/16).
 */
export function parseCidr(s: string, network: boolean): Cidr | undefined {
  const slash = s.indexOf("/");
  if (slash < 0) return undefined;
  const ip = parseIp(s.slice(0, slash));
  const bits = ip && parsePrefixLength(s.slice(slash + 1), ip.family);
  if (!ip || bits === undefined) return undefined;
  const value = network ? ip.value & maskOf(ip.family, bits) : ip.value;
  const text = value === ip.value ? ip.text : textOf(ip.family, value);
  return { family: ip.family, text, value, bits, cidr: `${text}/${bits}` };
}

/** The decimal prefix length of a CIDR (no sign, no leading zero), at most 32 or 128. */
export function parsePrefixLength(text: string, family: Family): number | undefined {
  if (!/^(?:0|[1-9]\d{0,2})$/.test(text)) return undefined;
  const bits = Number(text);
  return bits <= width(family) ? bits : undefined;
}

function maskOf(family: Family, bits: number): bigint {
  const w = BigInt(width(family));
  return ((1n << w) - 1n) ^ ((1n << (w - BigInt(bits))) - 1n);
}

/** Whether `outer` contains every address of `inner` (same family). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && outer.bits <= inner.bits && (inner.value & maskOf(outer.family, outer.bits)) === (outer.value & maskOf(outer.family, outer.bits));
}

/** Whether two prefixes share any address. */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

export interface HostPort {
  /** An IP literal's canonical text, or a DNS name in lower case. */
  host: string;
  /** 4 or 6 for an IP literal, undefined for a DNS name. */
  family: Family | undefined;
  port: number;
}

const hostnameRe = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/;

/**
 * `host:port` or `[v6]:port`; with `names`, the host may also be a DNS name. Port 0 is
 * refused unless `anyPort` (a listen address asking for a free port).
 */
export function parseHostPort(s: string, opts: { names?: boolean; anyPort?: boolean } = {}): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(0|[1-9]\d{0,4})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < (opts.anyPort === true ? 0 : 1) || port > 65535) return undefined;
  if (m[1] !== undefined) {
    const ip = parseIp(m[1]);
    return ip?.family === 6 ? { host: ip.text, family: 6, port } : undefined;
  }
  const host = m[2] ?? "";
  const ip = parseIp(host);
  if (ip) return ip.family === 4 ? { host: ip.text, family: 4, port } : undefined;
  const name = host.toLowerCase();
  // A dotted-decimal look-alike that is not a valid IPv4 address is a mistake, not a name.
  if (opts.names !== true || /^[\d.]+$/.test(name) || !hostnameRe.test(name)) return undefined;
  return { host: name, family: undefined, port };
}

/** Canonical `ip:port` / `[v6]:port` text of an IP endpoint, or undefined. */
export function parseIpEndpoint(s: string): string | undefined {
  const hp = parseHostPort(s);
  return hp === undefined ? undefined : formatEndpoint(hp.host, hp.port);
}

export function formatEndpoint(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Whether a URL or socket host names this machine's loopback: localhost, 127.0.0.0/8 or ::1 (brackets, case and a final dot allowed). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, "").replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost") return true;
  const ip = parseIp(h);
  return ip !== undefined && (ip.family === 4 ? ip.value >> 24n === 127n : ip.value === 1n);
}

// ---- IPv4 as an unsigned 32-bit number ------------------------------------------------------
// The fast path for code that runs per peer or per rule (the policy compiler, privhelper's
// allow-lists): no regex, no BigInt, no allocation.

/** A dotted quad, decimal, no leading zeros (so exactly canonical), as an unsigned 32-bit number. */
export function parseIPv4Int(s: string): number | undefined {
  if (s.length < 7 || s.length > 15) return undefined;
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46; // a virtual "." ends the last part
    if (c >= 48 && c <= 57) {
      if (digits === 1 && part === 0) return undefined; // leading zero
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return undefined;
    } else if (c === 46 && digits > 0) {
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else return undefined;
  }
  return dots === 4 ? value : undefined;
}

export function formatIPv4Int(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** An IPv4 prefix as numbers: `network` has no host bits. */
export interface Cidr4 {
  network: number;
  bits: number;
}

export function ipv4Mask(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/** Whether the IPv4 address `ip` lies in `c`. */
export function cidr4Contains(c: Cidr4, ip: number): boolean {
  return ((ip & ipv4Mask(c.bits)) >>> 0) === c.network;
}

export function cidr4Text(c: Cidr4): string {
  return `${formatIPv4Int(c.network)}/${c.bits}`;
}

/** The mesh range of every plexd mesh (docs/config-reference.md): each node owns one /32 in it. */
export const meshRange: Readonly<Cidr4> = Object.freeze({ network: 0x0a640000, bits: 16 });

/** Whether `s` is a canonical IPv4 address inside the mesh range. */
export function isMeshIp(s: string): boolean {
  const ip = parseIPv4Int(s);
  return ip !== undefined && cidr4Contains(meshRange, ip);
}
