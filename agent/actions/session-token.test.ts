import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { SignJWT, UnsecuredJWT } from "jose";
import { describe, expect, it } from "vitest";
import { inScope, RevocationSet, verifySessionToken, type VerifyContext } from "./session-token.js";

// Every reason a session token is refused, one by one, and what a good one yields.

const now = Date.parse("2026-12-03T12:00:00Z");
const nowS = now / 1000;
const current = generateKeyPairSync("ed25519");
const previous = generateKeyPairSync("ed25519");
const stranger = generateKeyPairSync("ed25519");

const base = { iss: "plexsphere", sub: "u_1", email: "ops@example.com", node_id: "n_local", session_id: "sess_1", actions: ["system.*", "hooks/backup"], iat: nowS - 60, exp: nowS + 3600 };
const mint = (claims: Record<string, unknown> = {}, key: KeyObject = current.privateKey) => new SignJWT({ ...base, ...claims }).setProtectedHeader({ alg: "EdDSA" }).sign(key);
const ctx = (o: Partial<VerifyContext> = {}): VerifyContext => ({ keys: () => [current.publicKey, previous.publicKey], nodeId: "n_local", now, revocations: new RevocationSet(), ...o });
const reason = async (token: string, action = "system.info", c = ctx()) => {
  const v = await verifySessionToken(token, action, c);
  return v.ok ? "ok" : v.reason;
};

describe("verifySessionToken", () => {
  it("accepts a good token signed by the current or the previous key, with its claims", async () => {
    const v = await verifySessionToken(await mint(), "system.info", ctx());
    expect(v).toEqual({ ok: true, claims: expect.objectContaining({ sub: "u_1", email: "ops@example.com", session_id: "sess_1" }) });
    expect(await reason(await mint({}, previous.privateKey))).toBe("ok");
  });

  it("refuses each bad token with its own reason", async () => {
    const cases: [string, Promise<string> | string, RegExp][] = [
      ["not a JWT", "abc.def", /not a JWT/],
      ["alg none", new UnsecuredJWT(base).encode(), /algorithm "none" is not EdDSA/],
      ["alg HS256", new SignJWT(base).setProtectedHeader({ alg: "HS256" }).sign(new Uint8Array(32)), /algorithm "HS256" is not EdDSA/],
      ["signed by another key", mint({}, stranger.privateKey), /signature does not verify/],
      ["wrong issuer", mint({ iss: "evil" }), /issuer "evil" is not plexsphere/],
      ["claims missing", mint({ email: undefined, actions: "x" }), /lacks or has malformed claims: email, actions/],
      ["another node", mint({ node_id: "n_other" }), /for node n_other, not this node \(n_local\)/],
      ["expired beyond leeway", mint({ iat: nowS - 7200, exp: nowS - 31 }), /expired at/],
      ["issued in the future beyond leeway", mint({ iat: nowS + 31, exp: nowS + 3600 }), /issued in the future/],
      ["lives longer than 24h", mint({ iat: nowS - 10, exp: nowS - 10 + 24 * 3600 + 1 }), /lifetime 86401s is longer than 24h/],
      ["action out of scope", mint(), /service\.restart is outside the session's scope \(system\.\*, hooks\/backup\)/],
    ];
    for (const [what, token, re] of cases) expect(await reason(await token, what === "action out of scope" ? "service.restart" : "system.info"), what).toMatch(re);
  });

  it("allows 30 s of clock skew on exp and iat", async () => {
    expect(await reason(await mint({ iat: nowS - 3600, exp: nowS - 29 }))).toBe("ok");
    expect(await reason(await mint({ iat: nowS + 29, exp: nowS + 600 }))).toBe("ok");
  });

  it("refuses with no signing key known, and the previous key once the set no longer holds it", async () => {
    expect(await reason(await mint(), "system.info", ctx({ keys: () => [] }))).toMatch(/no control-plane signing key is known yet/);
    expect(await reason(await mint({}, previous.privateKey), "system.info", ctx({ keys: () => [current.publicKey] }))).toMatch(/signature does not verify/);
  });

  it("refuses a revoked session", async () => {
    const revocations = new RevocationSet();
    revocations.add("sess_1", now - 1000, now);
    expect(await reason(await mint(), "system.info", ctx({ revocations }))).toBe("session sess_1 is revoked");
    expect(await reason(await mint({ session_id: "sess_2" }), "system.info", ctx({ revocations }))).toBe("ok");
  });
});

describe("RevocationSet", () => {
  it("keeps an entry 24 h after revoked_at, or until the exp of a token seen for it", () => {
    const set = new RevocationSet();
    set.add("a", now, now);
    expect(set.refusal("a", now - 1, now + 23 * 3600_000)).toMatch(/revoked/);
    expect(set.refusal("a", now - 1, now + 25 * 3600_000)).toBeUndefined();
    set.seen("b", now + 600_000);
    set.add("b", now, now);
    expect(set.refusal("b", now - 1, now + 300_000)).toMatch(/revoked/);
    expect(set.refusal("b", now - 1, now + 700_000)).toBeUndefined();
  });

  it("fails closed on overflow: the oldest goes, and tokens issued before its revocation are refused", () => {
    const set = new RevocationSet(3);
    for (let i = 0; i < 4; i++) set.add(`s${i}`, now + i * 1000, now + 4000);
    expect(set.size).toBe(3);
    // s0 was evicted, but a token of s0 issued before its revocation is still refused.
    expect(set.refusal("s0", now - 1, now + 4000)).toMatch(/more than 3 sessions were revoked at once/);
    expect(set.refusal("s9", now + 1, now + 4000)).toBeUndefined();
  });

  it("survives a restart through its JSON; an unreadable file refuses every token issued before now", () => {
    const set = new RevocationSet();
    set.add("a", now, now);
    const back = RevocationSet.from(JSON.parse(JSON.stringify(set.toJSON())), now);
    expect(back.refusal("a", now - 1, now + 1000)).toMatch(/revoked/);
    const lost = RevocationSet.from(undefined, now);
    expect(lost.refusal("x", now - 1, now)).toMatch(/issued before/);
    expect(lost.refusal("x", now + 1, now)).toBeUndefined();
  });

  it("holds 10,000 by default", () => {
    const set = new RevocationSet();
    for (let i = 0; i < 10_001; i++) set.add(`s${i}`, now + i, now);
    expect(set.size).toBe(10_000);
    expect(set.refusal("s0", now - 1, now)).toMatch(/more than 10000 sessions/);
  });
});

describe("inScope", () => {
  it.each([
    [["*"], "hooks/x", true],
    [["*"], "system.info", true],
    [["system.*"], "system.info", true],
    [["system.*"], "systemd.x", false],
    [["system.*"], "hooks/system.x", false],
    [["diagnostics.*"], "system.info", false],
    [["hooks/*"], "hooks/backup", true],
    [["hooks/*"], "system.info", false],
    [["hooks/backup"], "hooks/backup", true],
    [["hooks/backup"], "hooks/backup2", false],
    [["health.check"], "health.check", true],
    [["health.check"], "health.checks", false],
    [[], "system.info", false],
  ])("%j covers %s: %s", (patterns, action, expected) => {
    expect(inScope(patterns, action)).toBe(expected);
  });
});
