import { cidr4Contains, formatIPv4Int, meshRange, parseIPv4Int } from "../../proto/lib/net.js";
import { ApiError } from "./apierror.js";

/**
 * Hands out unique /32s from 10.100.0.0/16, starting at 10.100.1.1. Host octets 0 and 255
 * are skipped: they look like network/broadcast addresses and confuse people reading
 * `wg show`. Released addresses come back only after a cooldown so a stale peer
 * entry elsewhere never points at a new node.
 */
export class MeshIpPool {
  readonly #used = new Set<number>();
  readonly #cooling = new Map<number, number>();
  readonly #cooldownMs: number;
  #cursor = (1 << 8) | 1;

  constructor(cooldownMs = 600_000) {
    this.#cooldownMs = cooldownMs;
  }

  allocate(now: number): string {
    for (const [ip, until] of this.#cooling) if (until <= now) this.#cooling.delete(ip);
    for (let tries = 0; tries < 65536; tries++) {
      const cand = this.#cursor;
      this.#cursor = cand >= 0xfffe ? (1 << 8) | 1 : cand + 1;
      const low = cand & 0xff;
      if (low === 0 || low === 255 || cand < 256) continue;
      if (this.#used.has(cand) || this.#cooling.has(cand)) continue;
      this.#used.add(cand);
      return formatIPv4Int(meshRange.network | cand);
    }
    throw new ApiError(503, "mesh_ip_exhausted", "no free mesh IP in 10.100.0.0/16");
  }

  release(ip: string, now: number): void {
    const v = parseIPv4Int(ip);
    if (v === undefined || !cidr4Contains(meshRange, v)) return;
    const n = v & 0xffff;
    if (this.#used.delete(n)) this.#cooling.set(n, now + this.#cooldownMs);
  }
}
