// IP addresses, CIDRs and host:port endpoints: the one implementation every process uses
// (privhelper's allow-lists, the agent's config and peer admission, mockcp, the CLI).
// Parsing is strict and the result canonical, so that text compared or sent on is text
// produced here, never the caller's bytes: IPv4 as dotted decimal without leading zeros,
// IPv6 as RFC 5952 text (WHATWG URL serialisation, which compresses the same way).
import { isIPv4, isIPv6 } from "node:net";

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

const v4Value = (text: string): bigint => text.split(".").reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);

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
  // node:net's isIPv4 accepts only dotted decimal without leading zeros: exactly canonical.
  if (isIPv4(s)) return { family: 4, text: s, value: v4Value(s) };
  if (s.includes("%") || !isIPv6(s)) return undefined;
  const text = new URL(`http://[${s}]/`).hostname.slice(1, -1);
  return { family: 6, text, value: v6Value(text) };
}

const width = (f: Family): number => (f === 4 ? 32 : 128);

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
  const bitsText = s.slice(slash + 1);
  if (!/^(?:0|[1-9]\d{0,2})$/.test(bitsText)) return undefined;
  const ip = parseIp(s.slice(0, slash));
  const bits = Number(bitsText);
  if (!ip || bits > width(ip.family)) return undefined;
  const value = network ? ip.value & maskOf(ip.family, bits) : ip.value;
  const text = value === ip.value ? ip.text : textOf(ip.family, value);
  return { family: ip.family, text, value, bits, cidr: `${text}/${bits}` };
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

/** `host:port` or `[v6]:port`; with `names`, the host may also be a DNS name. */
export function parseHostPort(s: string, opts: { names: boolean } = { names: false }): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(0|[1-9]\d{0,4})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  if (m[1] !== undefined) {
    const ip = parseIp(m[1]);
    return ip?.family === 6 ? { host: ip.text, family: 6, port } : undefined;
  }
  const host = m[2] ?? "";
  const ip = parseIp(host);
  if (ip) return ip.family === 4 ? { host: ip.text, family: 4, port } : undefined;
  const name = host.toLowerCase();
  // A dotted-decimal look-alike that is not a valid IPv4 address is a mistake, not a name.
  if (!opts.names || /^[\d.]+$/.test(name) || !hostnameRe.test(name)) return undefined;
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
