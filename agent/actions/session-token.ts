import type { KeyObject } from "node:crypto";
import { decodeProtectedHeader, errors, jwtVerify } from "jose";

// Session tokens of local runs (docs/actions.md "Session tokens"): `plexd actions run` without
// --local carries the PLEXD_SESSION_TOKEN of an access-proxy session, a JWT the control plane
// signed. It is checked here, locally, against the control plane's signing keys (the ones
// event envelopes are verified with), its claims, the revocation set and its action scope.
// Every refusal names its reason; the caller reports it as `unauthorized`.

/** Clock skew allowed on `exp` and `iat`, and the longest lifetime a token may have. */
export const leewaySeconds = 30;
export const maxLifetimeSeconds = 24 * 3600;
export const maxRevocations = 10_000;

export interface SessionClaims {
  sub: string;
  email: string;
  node_id: string;
  session_id: string;
  actions: string[];
  iat: number;
  exp: number;
}

export type Verdict = { ok: true; claims: SessionClaims } | { ok: false; reason: string };

/**
 * Revoked session ids (session_revoked events). An entry stays until the revoked token's `exp`
 * when a token of that session was seen, else 24 h after `revoked_at`. At most 10,000: on
 * overflow the oldest goes, and every token issued before its `revoked_at` is refused from then
 * on, so a flood of revocations can only refuse more, never let a revoked token through.
 */
export class RevocationSet {
  // Kept on disk too: a restart must not bring a revoked token back.
  readonly #entries = new Map<string, { revokedAt: number; until: number }>();
  /** exp of the tokens seen per session, for how long an entry must stay. */
  readonly #seenExp = new Map<string, number>();
  /** Tokens issued before this (ms) are refused: revocations were evicted. */
  #issuedFloor = 0;
  readonly #max: number;
  #prunedAt = -Infinity;

  constructor(max = maxRevocations) {
    this.#max = max;
  }

  add(sessionId: string, revokedAt: number, now: number): void {
    this.prune(now);
    this.#entries.delete(sessionId);
    this.#entries.set(sessionId, { revokedAt, until: this.#seenExp.get(sessionId) ?? revokedAt + maxLifetimeSeconds * 1000 });
    while (this.#entries.size > this.#max) {
      const [oldest, e] = this.#entries.entries().next().value as [string, { revokedAt: number }];
      this.#entries.delete(oldest);
      this.#issuedFloor = Math.max(this.#issuedFloor, e.revokedAt);
    }
  }

  /** Why a token of `sessionId` issued at `iatMs` is refused, or undefined. */
  refusal(sessionId: string, iatMs: number, now: number): string | undefined {
    this.prune(now);
    if (this.#entries.has(sessionId)) return `session ${sessionId} is revoked`;
    if (iatMs < this.#issuedFloor) return `issued before ${new Date(this.#issuedFloor).toISOString()}, when more than ${this.#max} sessions were revoked at once; a new session is needed`;
    return undefined;
  }

  seen(sessionId: string, expMs: number): void {
    this.#seenExp.delete(sessionId);
    this.#seenExp.set(sessionId, expMs);
    if (this.#seenExp.size > this.#max) this.#seenExp.delete(this.#seenExp.keys().next().value as string);
  }

  /** What survives a restart (data_dir/sessions/revoked.json). */
  toJSON(): { issued_floor: number; entries: [string, number, number][] } {
    return { issued_floor: this.#issuedFloor, entries: [...this.#entries].map(([id, e]) => [id, e.revokedAt, e.until]) };
  }

  /** Restores a saved set; `undefined` (an unreadable file) refuses every token issued before `now`. */
  static from(json: unknown, now: number, max = maxRevocations): RevocationSet {
    const set = new RevocationSet(max);
    const j = json as { issued_floor?: unknown; entries?: unknown } | undefined;
    if (typeof j?.issued_floor !== "number" || !Array.isArray(j.entries)) {
      set.#issuedFloor = now;
      return set;
    }
    set.#issuedFloor = j.issued_floor;
    for (const e of j.entries as unknown[]) {
      if (Array.isArray(e) && typeof e[0] === "string" && typeof e[1] === "number" && typeof e[2] === "number") set.#entries.set(e[0], { revokedAt: e[1], until: e[2] });
    }
    return set;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Drops expired entries, at most once a second (a revocation flood stays linear). */
  prune(now: number): void {
    if (now - this.#prunedAt < 1000 && now >= this.#prunedAt) return;
    this.#prunedAt = now;
    for (const [id, e] of this.#entries) if (e.until + leewaySeconds * 1000 < now) this.#entries.delete(id);
  }
}

/** True when one of `patterns` covers `action`: `*`, `<ns>.*` (built-ins of a namespace), `hooks/*`, `hooks/<name>`, or the exact name. */
export function inScope(patterns: readonly string[], action: string): boolean {
  const isHook = action.startsWith("hooks/");
  return patterns.some((p) => {
    if (p === "*" || p === action) return true;
    if (p === "hooks/*") return isHook;
    if (p.endsWith(".*") && !p.startsWith("hooks/")) return !isHook && action.startsWith(p.slice(0, -1));
    return false;
  });
}

export interface VerifyContext {
  /** The control plane's signing keys trusted now: current, and previous during a transition. */
  keys: () => readonly KeyObject[];
  nodeId: string;
  now: number;
  revocations: RevocationSet;
}

const str = (v: unknown): v is string => typeof v === "string" && v !== "";

/** Checks `token` for a run of `action` on this node; the first problem found is the reason. */
export async function verifySessionToken(token: string, action: string, c: VerifyContext): Promise<Verdict> {
  const no = (reason: string): Verdict => ({ ok: false, reason });
  let alg: unknown;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch {
    return no("session token is not a JWT");
  }
  if (alg !== "EdDSA") return no(`session token algorithm ${JSON.stringify(alg)} is not EdDSA`);
  const keys = c.keys();
  if (keys.length === 0) return no("no control-plane signing key is known yet (the node is not registered)");
  let payload: Record<string, unknown> | undefined;
  for (const key of keys) {
    try {
      // Time claims are checked below, with the reasons this agent gives.
      payload = (await jwtVerify(token, key, { algorithms: ["EdDSA"], currentDate: new Date(c.now), clockTolerance: Number.MAX_SAFE_INTEGER })).payload as Record<string, unknown>;
      break;
    } catch (err) {
      if (!(err instanceof errors.JWSSignatureVerificationFailed)) return no(`session token is malformed: ${(err as Error).message}`);
    }
  }
  if (payload === undefined) return no("session token signature does not verify with the control plane's signing key");
  const p = payload;
  const missing = ["sub", "email", "node_id", "session_id"].filter((k) => !str(p[k]));
  if (!Number.isInteger(p.iat)) missing.push("iat");
  if (!Number.isInteger(p.exp)) missing.push("exp");
  if (!Array.isArray(p.actions) || !p.actions.every(str)) missing.push("actions");
  if (missing.length > 0) return no(`session token lacks or has malformed claims: ${missing.join(", ")}`);
  const claims = p as unknown as SessionClaims;
  if (p.iss !== "plexsphere") return no(`session token issuer ${JSON.stringify(p.iss)} is not plexsphere`);
  if (claims.node_id !== c.nodeId) return no(`session token is for node ${claims.node_id}, not this node (${c.nodeId})`);
  const nowS = c.now / 1000;
  if (claims.exp + leewaySeconds <= nowS) return no(`session token expired at ${new Date(claims.exp * 1000).toISOString()}`);
  if (claims.iat - leewaySeconds > nowS) return no(`session token is issued in the future (${new Date(claims.iat * 1000).toISOString()})`);
  if (claims.exp - claims.iat > maxLifetimeSeconds) return no(`session token lifetime ${claims.exp - claims.iat}s is longer than 24h`);
  const revoked = c.revocations.refusal(claims.session_id, claims.iat * 1000, c.now);
  if (revoked !== undefined) return no(revoked);
  c.revocations.seen(claims.session_id, claims.exp * 1000);
  if (!inScope(claims.actions, action)) return no(`${action} is outside the session's scope (${claims.actions.join(", ") || "no actions"})`);
  return { ok: true, claims };
}
