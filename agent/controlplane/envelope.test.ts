import { isDeepStrictEqual } from "node:util";
import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import canonicalize from "canonicalize";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FakeClock } from "../util/clock.js";
import { EnvelopeVerifier, decodeSignature, parseEnvelope, signingInput, type Envelope } from "./envelope.js";
import { nodeSigner, publicKeyB64FromSeed, seedRange, signEnvelope, tv1Fields, type Signer, type UnsignedEnvelope } from "../../test/support/envelope-testkit.js";
import { ReplayGuard } from "./replay.js";
import { TrustedSigningKeys } from "./signing-keys.js";

ed.hashes.sha512 = sha512;

const seed1 = seedRange(0x00);
const seed2 = seedRange(0x20);
const seed3 = seedRange(0x40);
const k1 = publicKeyB64FromSeed(seed1);
const k2 = publicKeyB64FromSeed(seed2);
const k3 = publicKeyB64FromSeed(seed3);
const sign1 = nodeSigner(seed1);
const sign2 = nodeSigner(seed2);
const sign3 = nodeSigner(seed3);
const nobleSigner =
  (seed: Uint8Array): Signer =>
  (msg) =>
    ed.sign(msg, seed);

const T = Date.parse("2025-01-15T10:30:00Z");

function setup(opts: { keys?: TrustedSigningKeys; now?: number } = {}) {
  const clock = new FakeClock(opts.now ?? T);
  const keys = opts.keys ?? TrustedSigningKeys.fromCurrent(k1);
  const replay = new ReplayGuard();
  const verifier = new EnvelopeVerifier({ keys, replay, now: () => clock.now() });
  return { clock, keys, replay, verifier };
}

let nonceSeq = 0;
function fresh(over: Partial<UnsignedEnvelope> & { at?: number } = {}): UnsignedEnvelope {
  const { at, ...rest } = over;
  nonceSeq++;
  return {
    event_type: "peer_removed",
    event_id: `evt_${nonceSeq}`,
    issued_at: new Date(at ?? T).toISOString(),
    nonce: nonceSeq.toString(16).padStart(32, "0"),
    payload: { peer_id: "n_peer456" },
    ...rest,
  };
}

const line = (e: unknown): string => JSON.stringify(e);

describe("TV-1 envelope signature", () => {
  it("derives the public key from seed 00..1f", () => {
    expect(k1).toBe("A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=");
    expect(Buffer.from(ed.getPublicKey(seed1)).toString("base64")).toBe(k1);
  });

  it("builds the exact 163 canonical bytes", () => {
    const bytes = signingInput(tv1Fields());
    expect(bytes.length).toBe(163);
    expect(bytes.toString("utf8")).toBe(
      '{"event_id":"evt_0001","event_type":"peer_removed","issued_at":"2025-01-15T10:30:00Z","nonce":"0123456789abcdef0123456789abcdef","payload":{"peer_id":"n_peer456"}}',
    );
  });

  it("signs deterministically to the test vector's signature, with node:crypto and noble alike", () => {
    const expected = "vaHsbhIRFnSRkevO0oSSmnd3lkoVCMugznfMv906D67RJjYLVXUbMexs+IydNZapb5vOPUS+qKPTR7SObi5oAg==";
    expect(signEnvelope(tv1Fields(), sign1).signature).toBe(expected);
    expect(signEnvelope(tv1Fields(), nobleSigner(seed1)).signature).toBe(expected);
  });

  it("verifies the TV-1 envelope with the current key", () => {
    const { verifier } = setup();
    const r = verifier.verify(line(signEnvelope(tv1Fields(), sign1)));
    expect(r).toEqual({ ok: true, verifiedWith: "current", issuedAtMs: Date.parse("2025-01-15T10:30:00Z"), envelope: expect.objectContaining({ event_id: "evt_0001" }) });
  });
});

describe("independent implementation cross-check (@noble/ed25519)", () => {
  it("noble-signed envelopes verify with node:crypto; node-signed ones verify with noble", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }), fc.boolean(), (payload, nobleSigns) => {
        // JSON round trip: fc.jsonValue can produce -0, which JSON cannot carry.
        const fields = fresh({ payload: JSON.parse(JSON.stringify(payload)) as Record<string, unknown> });
        const env = signEnvelope(fields, nobleSigns ? nobleSigner(seed1) : sign1);
        const { verifier } = setup();
        expect(verifier.verify(line(env)).ok).toBe(true);
        const ok = ed.verify(Buffer.from(env.signature, "base64"), signingInput(fields), Buffer.from(k1, "base64"), { zip215: false });
        expect(ok).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it("node:crypto rejects what noble rejects: a signature by another key", () => {
    const env = signEnvelope(fresh(), nobleSigner(seed2));
    expect(ed.verify(Buffer.from(env.signature, "base64"), signingInput(env), Buffer.from(k1, "base64"))).toBe(false);
    expect(setup().verifier.verify(line(env))).toMatchObject({ ok: false, reason: "bad_signature" });
  });
});

describe("TV-2 canonicalization", () => {
  it("canonicalizes the test vector's payload exactly", () => {
    const payload = JSON.parse('{"z":1,"a":[true,null,{"b":"ü€","a":"line\\nbreak"}],"m":1.50,"big":1e21,"s":"<tag>&"}') as unknown;
    expect(canonicalize(payload)).toBe('{"a":[true,null,{"a":"line\\nbreak","b":"ü€"}],"big":1e+21,"m":1.5,"s":"<tag>&","z":1}');
  });

  it("still verifies after re-serialisation with whitespace and shuffled key order", () => {
    const payload = JSON.parse('{"z":1,"a":[true,null,{"b":"ü€","a":"line\\nbreak"}],"m":1.50,"big":1e21,"s":"<tag>&"}') as Record<string, unknown>;
    const env = signEnvelope(fresh({ payload }), sign1);
    const shuffled =
      `{ "signature" : "${env.signature}" ,\t"payload": { "s":"<tag>&", "m" : 1.50, "big": 1E21, "a" : [ true , null , { "a":"line\\nbreak", "b": "\\u00fc\\u20ac" } ], "z": 1.0 },` +
      ` "nonce":"${env.nonce}", "issued_at":"${env.issued_at}", "event_id":"${env.event_id}", "event_type":"${env.event_type}", "unsigned_extra": [1,2] }`;
    expect(JSON.parse(shuffled)).not.toBe(undefined);
    expect(setup().verifier.verify(shuffled)).toMatchObject({ ok: true, verifiedWith: "current" });
  });

  it("ignores members other than the six and never hands them on", () => {
    const env = { ...signEnvelope(fresh(), sign1), extra: "x" };
    const r = setup().verifier.verify(line(env));
    expect(r.ok && Object.keys(r.envelope).sort()).toEqual(["event_id", "event_type", "issued_at", "nonce", "payload", "signature"]);
  });
});

describe("TV-3 tampering", () => {
  const base = (): Envelope => signEnvelope(tv1Fields(), sign1);
  const tamper = (f: (e: Envelope) => unknown) => {
    const v = f(base());
    return setup().verifier.verify(typeof v === "string" ? v : line(v));
  };

  it.each([
    ["payload", (e: Envelope) => ({ ...e, payload: { peer_id: "n_peer457" } })],
    ["event_id", (e: Envelope) => ({ ...e, event_id: "evt_0002" })],
    ["nonce", (e: Envelope) => ({ ...e, nonce: "1123456789abcdef0123456789abcdef" })],
    ["issued_at", (e: Envelope) => ({ ...e, issued_at: "2025-01-15T10:30:01Z" })],
    ["issued_at re-formatted to an equal instant", (e: Envelope) => ({ ...e, issued_at: "2025-01-15T10:30:00.000Z" })],
    ["issued_at as an equal +00:00 offset", (e: Envelope) => ({ ...e, issued_at: "2025-01-15T10:30:00+00:00" })],
    ["event_type", (e: Envelope) => ({ ...e, event_type: "peer_removeD" })],
    ["signature by a second key", () => signEnvelope(tv1Fields(), sign2)],
    ["signature not base64", (e: Envelope) => ({ ...e, signature: `!${e.signature.slice(1)}` })],
    ["signature of 63 bytes", (e: Envelope) => ({ ...e, signature: Buffer.from(e.signature, "base64").subarray(0, 63).toString("base64") })],
    ["signature of 65 bytes", (e: Envelope) => ({ ...e, signature: Buffer.concat([Buffer.from(e.signature, "base64"), Buffer.from([0])]).toString("base64") })],
    ["signature without padding", (e: Envelope) => ({ ...e, signature: e.signature.replace(/=+$/, "") })],
    ["signature in base64url", (e: Envelope) => ({ ...e, signature: Buffer.from(e.signature, "base64").toString("base64url") + "==" })],
  ])("rejects a changed %s as bad_signature", (_name, f) => {
    expect(tamper(f)).toMatchObject({ ok: false, reason: "bad_signature", eventId: expect.any(String) });
  });

  it("checks the second key's public key", () => {
    expect(k2).toBe("Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc=");
  });

  it.each(["event_type", "event_id", "issued_at", "nonce", "payload", "signature"] as const)("rejects a missing %s as malformed", (field) => {
    expect(tamper((e) => ({ ...e, [field]: undefined }))).toMatchObject({ ok: false, reason: "malformed" });
  });

  it.each([
    ["payload array", (e: Envelope) => ({ ...e, payload: [] })],
    ["payload string", (e: Envelope) => ({ ...e, payload: "x" })],
    ["payload null", (e: Envelope) => ({ ...e, payload: null })],
    ["event_id number", (e: Envelope) => ({ ...e, event_id: 1 })],
    ["empty nonce", (e: Envelope) => ({ ...e, nonce: "" })],
    ["129-char event_id", (e: Envelope) => ({ ...e, event_id: "e".repeat(129) })],
    ["issued_at without zone", (e: Envelope) => ({ ...e, issued_at: "2025-01-15T10:30:00" })],
    ["issued_at not a date", (e: Envelope) => ({ ...e, issued_at: "2025-02-30T10:30:00Z" })],
    ["top-level array", () => "[]"],
    ["not JSON", () => "{"],
    ["empty data", () => ""],
  ])("rejects %s as malformed", (_name, f) => {
    expect(tamper(f as (e: Envelope) => unknown)).toMatchObject({ ok: false, reason: "malformed" });
  });

  it("rejects a data field over the size cap as malformed before parsing it", () => {
    const { keys, replay } = setup();
    const v = new EnvelopeVerifier({ keys, replay, now: () => T, maxEnvelopeBytes: 1000 });
    const big = signEnvelope(fresh({ payload: { pad: "€".repeat(400) } }), sign1);
    expect(Buffer.byteLength(line(big))).toBeGreaterThan(1000);
    expect(line(big).length).toBeLessThan(1000);
    expect(v.verify(line(big))).toMatchObject({ ok: false, reason: "malformed" });
  });

  it("rejects a payload with a lone surrogate (not canonicalizable) as malformed", () => {
    const data = line(signEnvelope(fresh(), sign1)).replace('"n_peer456"', '"\\ud800"');
    expect(setup().verifier.verify(data)).toMatchObject({ ok: false, reason: "malformed" });
  });

  it("decodeSignature accepts only canonical 88-char base64 of 64 bytes", () => {
    const sig = base().signature;
    expect(decodeSignature(sig)?.length).toBe(64);
    expect(decodeSignature(sig.slice(0, 85) + "B==")).toBe(undefined);
  });
});

describe("TV-4 staleness", () => {
  it.each([
    [300_000, true, undefined],
    [-300_000, true, undefined],
    [301_000, false, "stale"],
    [-301_000, false, "future"],
    [300_001, false, "stale"],
    [-300_001, false, "future"],
  ])("now = T + (%d ms) → ok=%s", (delta, ok, reason) => {
    const { verifier } = setup({ now: T + delta });
    const r = verifier.verify(line(signEnvelope(fresh({ at: T }), sign1)));
    expect(r.ok).toBe(ok);
    if (!r.ok) expect(r.reason).toBe(reason);
  });

  it("checks staleness before the signature (order of 4.4)", () => {
    const { verifier } = setup({ now: T + 400_000 });
    expect(verifier.verify(line(signEnvelope(fresh({ at: T }), sign2)))).toMatchObject({ reason: "stale" });
  });
});

describe("TV-5 replay, nonce and duplicates", () => {
  it("rejects the same envelope twice as replay", () => {
    const { verifier } = setup();
    const data = line(signEnvelope(fresh(), sign1));
    expect(verifier.verify(data).ok).toBe(true);
    expect(verifier.verify(data)).toMatchObject({ ok: false, reason: "replay" });
  });

  it("does not record the nonce of a badly signed event", () => {
    const { verifier } = setup();
    const fields = fresh();
    expect(verifier.verify(line(signEnvelope(fields, sign2)))).toMatchObject({ reason: "bad_signature" });
    expect(verifier.verify(line(signEnvelope(fields, sign1))).ok).toBe(true);
  });

  it("forgets a nonce after issued_at + 300 s, not before (with TV-4 bounds)", () => {
    const { verifier, clock, replay } = setup();
    const nonce = "ab".repeat(16);
    expect(verifier.verify(line(signEnvelope(fresh({ nonce, at: T }), sign1))).ok).toBe(true);
    clock.set(T + 300_000);
    expect(verifier.verify(line(signEnvelope(fresh({ nonce, at: T }), sign1)))).toMatchObject({ reason: "replay" });
    expect(verifier.verify(line(signEnvelope(fresh({ nonce, at: T + 200_000 }), sign1)))).toMatchObject({ reason: "replay" });
    clock.set(T + 300_001);
    expect(verifier.verify(line(signEnvelope(fresh({ nonce, at: T }), sign1)))).toMatchObject({ reason: "stale" });
    expect(verifier.verify(line(signEnvelope(fresh({ nonce, at: T + 200_000 }), sign1))).ok).toBe(true);
    expect(replay.nonces.size).toBe(1);
  });

  it("drops a re-sent event id with a fresh nonce as duplicate; the handler runs once", () => {
    const { verifier } = setup();
    let handled = 0;
    const deliver = (data: string) => {
      const r = verifier.verify(data);
      if (r.ok) {
        handled++;
        verifier.markDispatched(r.envelope.event_id);
      }
      return r;
    };
    const first = fresh({ event_id: "evt_dup" });
    expect(deliver(line(signEnvelope(first, sign1))).ok).toBe(true);
    const again = fresh({ event_id: "evt_dup" });
    expect(again.nonce).not.toBe(first.nonce);
    expect(deliver(line(signEnvelope(again, sign1)))).toMatchObject({ ok: false, reason: "duplicate", eventId: "evt_dup" });
    expect(handled).toBe(1);
    expect(verifier.rejected.duplicate).toBe(1);
    expect(verifier.replay.lastEventId).toBe("evt_dup");
  });

  it("survives persist → restore: a captured event replayed after a restart is refused", () => {
    const a = setup();
    const data = line(signEnvelope(fresh({ event_id: "evt_p" }), sign1));
    const r = a.verifier.verify(data);
    if (r.ok) a.verifier.markDispatched(r.envelope.event_id);
    const saved = JSON.parse(JSON.stringify(a.replay)) as unknown;
    const restored = ReplayGuard.fromJSON(saved, T + 1000);
    const b = new EnvelopeVerifier({ keys: a.keys, replay: restored, now: () => T + 1000 });
    expect(b.verify(data)).toMatchObject({ reason: "replay" });
    expect(b.verify(line(signEnvelope(fresh({ event_id: "evt_p" }), sign1)))).toMatchObject({ reason: "duplicate" });
    expect(restored.lastEventId).toBe("evt_p");
  });
});

describe("TV-6 signing-key transition", () => {
  const oneHour = 3_600_000;
  const rotation = (at: number, newKey: string, signer: Signer) =>
    line(
      signEnvelope(
        fresh({
          at,
          event_type: "signing_key_rotated",
          payload: { new_signing_public_key: newKey, valid_from: new Date(T).toISOString(), transition_period: "1h" },
        }),
        signer,
      ),
    );

  function rotated() {
    const s = setup();
    const r = s.verifier.verify(rotation(T, k2, sign1));
    expect(r).toMatchObject({ ok: true, verifiedWith: "current" });
    if (r.ok) {
      expect(s.keys.applyRotation(r.envelope.payload)).toBe(true);
      s.verifier.markDispatched(r.envelope.event_id);
    }
    return s;
  }

  function checkBehaviour(s: { verifier: EnvelopeVerifier; clock: FakeClock }) {
    s.clock.set(T + 10_000);
    expect(s.verifier.verify(line(signEnvelope(fresh({ at: T + 10_000 }), sign2)))).toMatchObject({ ok: true, verifiedWith: "current" });
    expect(s.verifier.verify(line(signEnvelope(fresh({ at: T + 10_000 }), sign1)))).toMatchObject({ ok: true, verifiedWith: "previous" });
    // K1 is now only `previous`: it may not announce keys any more.
    expect(s.verifier.verify(rotation(T + 10_000, k3, sign1))).toMatchObject({ ok: false, reason: "bad_signature" });
    s.clock.set(T + oneHour - 1);
    expect(s.verifier.verify(line(signEnvelope(fresh({ at: T + oneHour - 1 }), sign1)))).toMatchObject({ ok: true, verifiedWith: "previous" });
    s.clock.set(T + oneHour);
    expect(s.verifier.verify(line(signEnvelope(fresh({ at: T + oneHour }), sign1)))).toMatchObject({ ok: false, reason: "bad_signature" });
    expect(s.verifier.verify(line(signEnvelope(fresh({ at: T + oneHour }), sign2)))).toMatchObject({ ok: true, verifiedWith: "current" });
  }

  it("accepts K1 until T + 1h, K2 at once, and refuses a later rotation signed by K1", () => {
    const s = rotated();
    expect(s.keys.toJSON()).toEqual({ current: k2, previous: k1, transition_expires: "2025-01-15T11:30:00.000Z" });
    checkBehaviour(s);
  });

  it("behaves the same after persist and restart", () => {
    const s = rotated();
    const keysJson = JSON.parse(JSON.stringify(s.keys)) as unknown;
    const replayJson = JSON.parse(JSON.stringify(s.replay)) as unknown;
    const clock = new FakeClock(T);
    const keys = TrustedSigningKeys.fromJSON(keysJson);
    const verifier = new EnvelopeVerifier({ keys, replay: ReplayGuard.fromJSON(replayJson, T), now: () => clock.now() });
    checkBehaviour({ verifier, clock });
  });

  it("a second rotation (signed by the current key) drops the old previous", () => {
    const s = rotated();
    s.clock.set(T + 20_000);
    const r = s.verifier.verify(rotation(T + 20_000, k3, sign2));
    expect(r.ok).toBe(true);
    if (r.ok) s.keys.applyRotation(r.envelope.payload);
    expect(s.keys.toJSON()).toMatchObject({ current: k3, previous: k2 });
    expect(s.verifier.verify(line(signEnvelope(fresh({ at: T + 20_000 }), sign1)))).toMatchObject({ reason: "bad_signature" });
    expect(s.verifier.verify(line(signEnvelope(fresh({ at: T + 20_000 }), sign2)))).toMatchObject({ verifiedWith: "previous" });
    expect(s.verifier.verify(line(signEnvelope(fresh({ at: T + 20_000 }), sign3)))).toMatchObject({ verifiedWith: "current" });
  });
});

describe("property: one changed byte in the data line", () => {
  // Precisely: the mutated line is accepted iff it still parses to JSON whose six required
  // members are deep-equal to the original's (e.g. a whitespace byte swapped for another
  // whitespace byte, or a change inside an unsigned extra member). Everything else is rejected.
  const env = { ...signEnvelope(fresh({ payload: { peer_id: "n_peer456", n: 1.5, list: [true, null, "ü"] } }), sign1), extra: "unsigned" };
  const spaced = JSON.stringify(env, null, 1).replace(/\n/g, " ");
  const original = Buffer.from(spaced, "utf8");
  const six = (v: unknown) => {
    if (typeof v !== "object" || v === null) return undefined;
    const o = v as Record<string, unknown>;
    return [o.event_type, o.event_id, o.issued_at, o.nonce, o.payload, o.signature];
  };
  const expected = six(env);
  const now = Date.parse(env.issued_at);

  it("the unmutated line verifies", () => {
    expect(setup({ now }).verifier.verify(spaced).ok).toBe(true);
  });

  it("holds for random positions and byte values", () => {
    let acceptedSome = 0;
    fc.assert(
      fc.property(fc.nat({ max: original.length - 1 }), fc.integer({ min: 0, max: 255 }), (pos, byte) => {
        fc.pre(original[pos] !== byte);
        const mutated = Buffer.from(original);
        mutated[pos] = byte;
        const text = new TextDecoder().decode(mutated);
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        const same = isDeepStrictEqual(six(parsed), expected);
        const r = setup({ now }).verifier.verify(text);
        if (r.ok) acceptedSome++;
        expect(r.ok).toBe(same);
      }),
      { numRuns: 4000 },
    );
    // The equivalence must have both sides exercised to mean anything.
    expect(acceptedSome).toBeGreaterThan(0);
  });
});

describe("parseEnvelope", () => {
  it("returns the issued_at instant with sub-second precision and offsets", () => {
    const r = parseEnvelope(line({ ...signEnvelope(fresh(), sign1), issued_at: "2025-01-15T11:30:00.5+01:00" }));
    expect(r.ok && r.issuedAtMs).toBe(T + 500);
  });
});
