import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import canonicalize from "canonicalize";
import { describe, expect, it } from "vitest";
import { canonicalBytes, newNonce, SigningKey } from "./signer.js";

ed.hashes.sha512 = sha512;

const seed1 = Uint8Array.from({ length: 32 }, (_, i) => i);
const seed2 = Uint8Array.from({ length: 32 }, (_, i) => i + 32);
const tv1 = {
  event_type: "peer_removed",
  event_id: "evt_0001",
  issued_at: "2025-01-15T10:30:00Z",
  nonce: "0123456789abcdef0123456789abcdef",
  payload: { peer_id: "n_peer456" },
};

describe("SigningKey (TV-1)", () => {
  it("derives the test vectors' public keys from the TV-1 and TV-3 seeds", () => {
    expect(SigningKey.fromSeed(seed1).publicKey).toBe("A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=");
    expect(SigningKey.fromHex(Buffer.from(seed2).toString("hex")).publicKey).toBe("Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc=");
    // Independent derivation with noble.
    expect(Buffer.from(ed.getPublicKey(seed1)).toString("base64")).toBe(SigningKey.fromSeed(seed1).publicKey);
  });

  it("signs the TV-1 envelope to exactly the test vector's canonical bytes and signature", () => {
    const bytes = canonicalBytes(tv1);
    expect(bytes.toString("utf8")).toBe(
      '{"event_id":"evt_0001","event_type":"peer_removed","issued_at":"2025-01-15T10:30:00Z","nonce":"0123456789abcdef0123456789abcdef","payload":{"peer_id":"n_peer456"}}',
    );
    expect(bytes).toHaveLength(163);
    const env = SigningKey.fromSeed(seed1).signEnvelope(tv1);
    expect(env.signature).toBe("vaHsbhIRFnSRkevO0oSSmnd3lkoVCMugznfMv906D67RJjYLVXUbMexs+IydNZapb5vOPUS+qKPTR7SObi5oAg==");
    expect(ed.verify(Buffer.from(env.signature, "base64"), bytes, ed.getPublicKey(seed1))).toBe(true);
  });

  it("covers exactly the five members: extra members neither change nor leak into the signature", () => {
    const key = SigningKey.fromSeed(seed1);
    const withExtra = { ...tv1, signature: "junk", extra: 1 } as typeof tv1;
    expect(key.signEnvelope(withExtra)).toEqual(key.signEnvelope(tv1));
    expect(Object.keys(key.signEnvelope(withExtra))).toEqual(["event_type", "event_id", "issued_at", "nonce", "payload", "signature"]);
  });

  it("canonicalizes like TV-2", () => {
    const payload = JSON.parse('{"z":1,"a":[true,null,{"b":"ü€","a":"line\\nbreak"}],"m":1.50,"big":1e21,"s":"<tag>&"}') as unknown;
    expect(canonicalize(payload)).toBe('{"a":[true,null,{"a":"line\\nbreak","b":"ü€"}],"big":1e+21,"m":1.5,"s":"<tag>&","z":1}');
  });

  it("makes 32-hex-char nonces, different every time", () => {
    const a = newNonce();
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(newNonce()).not.toBe(a);
  });

  it("rejects seeds that are not 32 bytes", () => {
    expect(() => SigningKey.fromSeed(new Uint8Array(31))).toThrow(/32 bytes/);
    expect(() => SigningKey.fromHex("abcd")).toThrow(/64 hex/);
  });
});
