import { createCipheriv, randomBytes } from "node:crypto";
import { isKey32 } from "../../proto/lib/keys.js";
import { ApiError, badRequest } from "./apierror.js";

/** A secret response body. */
export interface SecretResponse {
  key: string;
  ciphertext: string;
  nonce: string;
  version: number;
}

export interface SecretRef {
  key: string;
  version: number;
}

/** A secret as the control API shows it (mockcp is a test tool, so the value is visible). */
export interface SecretRecord {
  key: string;
  /** null for a key that exists only as a denial. */
  value: string | null;
  version: number;
  /** Reads answer 403. */
  denied: boolean;
  /** Listed in `secret_refs` (state and node_secrets_updated). */
  listed: boolean;
  updated_at: string;
}

export interface SecretInput {
  value?: string | undefined;
  version?: number | undefined;
  denied?: boolean | undefined;
  listed?: boolean | undefined;
}

/**
 * AES-256-GCM as the secrets endpoint prescribes: key = NSK (base64 of 32 bytes), a 12-byte nonce,
 * ciphertext followed directly by the 16-byte tag, no additional authenticated data.
 * `nonce` is injectable only so TV-7 can be checked; real responses always use a fresh one.
 */
export function encryptSecret(nskB64: string, plaintext: string, nonce: Buffer = randomBytes(12)): { ciphertext: string; nonce: string } {
  if (!isKey32(nskB64)) throw new ApiError(500, "internal", "node secret key is not 32 bytes of base64");
  const key = Buffer.from(nskB64, "base64");
  if (nonce.length !== 12) throw new ApiError(500, "internal", "nonce must be 12 bytes");
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()]);
  return { ciphertext: body.toString("base64"), nonce: nonce.toString("base64") };
}

/** Secrets per node, set through the control API and served (encrypted) on GET /v1/nodes/{id}/secrets/{key}. */
export class SecretStore {
  readonly #byNode = new Map<string, Map<string, SecretRecord>>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  #of(nodeId: string): Map<string, SecretRecord> {
    let m = this.#byNode.get(nodeId);
    if (m === undefined) {
      m = new Map();
      this.#byNode.set(nodeId, m);
    }
    return m;
  }

  /**
   * Sets or updates one secret. Without `version` an existing secret goes to version+1 when
   * its value changes (a new secret starts at 1). `denied` without a value is a bare denial.
   */
  set(nodeId: string, key: string, input: SecretInput): SecretRecord {
    const m = this.#of(nodeId);
    const prev = m.get(key);
    const value = input.value ?? prev?.value ?? null;
    const denied = input.denied ?? prev?.denied ?? false;
    if (value === null && !denied) throw badRequest("value is required unless denied is true");
    let version = input.version;
    if (version === undefined) version = prev === undefined ? 1 : prev.value === value ? prev.version : prev.version + 1;
    const rec: SecretRecord = {
      key,
      value,
      version,
      denied,
      listed: input.listed ?? (prev !== undefined && input.denied === undefined ? prev.listed : !denied),
      updated_at: new Date(this.#now()).toISOString(),
    };
    m.set(key, rec);
    return rec;
  }

  delete(nodeId: string, key: string): boolean {
    return this.#of(nodeId).delete(key);
  }

  list(nodeId: string): SecretRecord[] {
    return [...this.#of(nodeId).values()].sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  /** The secret index: names and versions of the listed secrets, never values. */
  refs(nodeId: string): SecretRef[] {
    return this.list(nodeId)
      .filter((s) => s.listed)
      .map((s) => ({ key: s.key, version: s.version }));
  }

  /** A secret read: 403 denied, 404 missing, else the value encrypted with `nsk`. */
  read(nodeId: string, key: string, nsk: string): SecretResponse {
    const rec = this.#of(nodeId).get(key);
    if (rec === undefined) throw new ApiError(404, "secret_not_found", `no secret ${key} for ${nodeId}`);
    if (rec.denied || rec.value === null) throw new ApiError(403, "forbidden", `node ${nodeId} may not read secret ${key}`);
    return { key, ...encryptSecret(nsk, rec.value), version: rec.version };
  }
}
