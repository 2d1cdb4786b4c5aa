import { describe, expect, it } from "vitest";
import { publicKeyB64FromSeed, seedRange } from "../../test/support/envelope-testkit.js";
import { TrustedSigningKeys } from "./signing-keys.js";

const k1 = publicKeyB64FromSeed(seedRange(0));
const k2 = publicKeyB64FromSeed(seedRange(0x20));
const k3 = publicKeyB64FromSeed(seedRange(0x40));
const T = Date.parse("2025-01-16T00:00:00Z");

describe("TrustedSigningKeys", () => {
  it("applies a rotation: previous := current, expiry = valid_from + period (fractions allowed)", () => {
    const keys = TrustedSigningKeys.fromCurrent(k1);
    expect(keys.previousAt(0)).toBe(undefined);
    expect(keys.applyRotation({ new_signing_public_key: k2, valid_from: "2025-01-16T00:00:00Z", transition_period: "1.5h" })).toBe(true);
    expect(keys.toJSON()).toEqual({ current: k2, previous: k1, transition_expires: "2025-01-16T01:30:00.000Z" });
    expect(keys.previousAt(T + 5_400_000 - 1)?.b64).toBe(k1);
    expect(keys.previousAt(T + 5_400_000)).toBe(undefined);
  });

  it("re-applying the same rotation is a no-op; a second rotation drops the old previous", () => {
    const keys = TrustedSigningKeys.fromCurrent(k1);
    const rot = { new_signing_public_key: k2, valid_from: "2025-01-16T00:00:00Z", transition_period: "24h" };
    keys.applyRotation(rot);
    expect(keys.applyRotation(rot)).toBe(false);
    expect(keys.toJSON().previous).toBe(k1);
    keys.applyRotation({ ...rot, new_signing_public_key: k3, transition_period: "300s" });
    expect(keys.toJSON()).toEqual({ current: k3, previous: k2, transition_expires: "2025-01-16T00:05:00.000Z" });
  });

  it("counts the rotations it applied (not repeats), so a state pull older than one can be told apart", () => {
    const keys = TrustedSigningKeys.fromCurrent(k1);
    const rot = { new_signing_public_key: k2, valid_from: "2025-01-16T00:00:00Z", transition_period: "24h" };
    expect(keys.rotations).toBe(0);
    keys.applyRotation(rot);
    keys.applyRotation(rot);
    expect(keys.rotations).toBe(1);
    keys.adopt({ current: k1 });
    expect(keys.rotations).toBe(1);
  });

  it.each([
    [{ new_signing_public_key: "AAAA", valid_from: "2025-01-16T00:00:00Z", transition_period: "1h" }],
    [{ new_signing_public_key: k2, valid_from: "yesterday", transition_period: "1h" }],
    [{ new_signing_public_key: k2, valid_from: "2025-01-16T00:00:00Z", transition_period: "1 hour" }],
    [{ valid_from: "2025-01-16T00:00:00Z", transition_period: "1h" }],
  ])("rejects an invalid rotation payload without changing the set", (payload) => {
    const keys = TrustedSigningKeys.fromCurrent(k1);
    expect(() => keys.applyRotation(payload)).toThrow(expect.objectContaining({ code: "invalid_argument" }));
    expect(keys.toJSON()).toEqual({ current: k1 });
  });

  it("adopts signing_keys from a state response exactly as sent", () => {
    const keys = TrustedSigningKeys.fromCurrent(k1);
    const sent = { current: k2, previous: k1, transition_expires: "2025-01-17T00:00:00+02:00" };
    expect(keys.adopt(sent)).toBe(true);
    expect(keys.toJSON()).toEqual(sent);
    expect(keys.adopt(sent)).toBe(false);
    expect(keys.previousAt(Date.parse("2025-01-16T21:59:59Z"))?.b64).toBe(k1);
    expect(keys.previousAt(Date.parse("2025-01-16T22:00:00Z"))).toBe(undefined);
    expect(keys.adopt({ current: k2, previous: null, transition_expires: null })).toBe(true);
    expect(keys.toJSON()).toEqual({ current: k2 });
  });

  it("never trusts a previous key that has no expiry", () => {
    const keys = TrustedSigningKeys.fromJSON({ current: k2, previous: k1 });
    expect(keys.previousAt(0)).toBe(undefined);
  });

  it("round-trips through JSON", () => {
    const keys = TrustedSigningKeys.fromCurrent(k1);
    keys.applyRotation({ new_signing_public_key: k2, valid_from: "2025-01-16T00:00:00Z", transition_period: "1h" });
    const back = TrustedSigningKeys.fromJSON(JSON.parse(JSON.stringify(keys)));
    expect(back.toJSON()).toEqual(keys.toJSON());
    expect(back.previousAt(T)?.b64).toBe(k1);
  });

  it("rejects keys that are not 32 bytes of canonical base64", () => {
    for (const bad of [Buffer.alloc(31).toString("base64"), Buffer.alloc(33).toString("base64"), k1.replace("=", "")]) {
      expect(() => TrustedSigningKeys.fromJSON({ current: bad })).toThrow(expect.objectContaining({ code: "invalid_argument" }));
    }
    expect(() => TrustedSigningKeys.fromJSON({ current: 5 })).toThrow();
    expect(TrustedSigningKeys.fromJSON({ current: k1 }).current.key.asymmetricKeyType).toBe("ed25519");
  });
});
