import { sign as cryptoSign } from "node:crypto";
import { signingInput, type Envelope } from "../../agent/controlplane/envelope.js";
import { ed25519PrivateKeyFromSeed, rawPublicKey } from "../../proto/lib/keys.js";

// Signing helpers for tests, the fuzz suite and benchmarks. The agent itself never signs; every
// test builds envelopes the same way through these. Tests cross-check these node:crypto
// signatures against @noble/ed25519.

export type Signer = (msg: Uint8Array) => Uint8Array;

/** Base64 of the raw 32-byte public key for a seed. */
export function publicKeyB64FromSeed(seed: Uint8Array): string {
  return rawPublicKey(ed25519PrivateKeyFromSeed(seed));
}

export function nodeSigner(seed: Uint8Array): Signer {
  const key = ed25519PrivateKeyFromSeed(seed);
  return (msg) => cryptoSign(null, msg, key);
}

/** Bytes start, start+1, ... (the TV-1 seed is seedRange(0), the TV-3 second key seedRange(0x20)). */
export function seedRange(start: number): Uint8Array {
  return Uint8Array.from({ length: 32 }, (_, i) => (start + i) & 0xff);
}

export type UnsignedEnvelope = Omit<Envelope, "signature">;

export function signEnvelope(fields: UnsignedEnvelope, signer: Signer): Envelope {
  const sig = signer(signingInput(fields));
  return { ...fields, signature: Buffer.from(sig).toString("base64") };
}

/** The TV-1 test-vector envelope (docs/architecture.md#the-control-plane-channel), unsigned. */
export function tv1Fields(): UnsignedEnvelope {
  return {
    event_type: "peer_removed",
    event_id: "evt_0001",
    issued_at: "2025-01-15T10:30:00Z",
    nonce: "0123456789abcdef0123456789abcdef",
    payload: { peer_id: "n_peer456" },
  };
}

/** One SSE frame as the CP writes it (4.1). */
export function sseFrame(env: Envelope): string {
  return `id: ${env.event_id}\nevent: ${env.event_type}\ndata: ${JSON.stringify(env)}\n\n`;
}
