import type { SigningKey } from "./signer.js";

/** The state response's `signing_keys`. */
export interface SigningKeysView {
  current: string;
  previous: string | null;
  transition_expires: string | null;
}

/**
 * The CP's signing keys across rotations. After a rotation `current` is the new
 * key K2 at once (that is what nodes hold after the `signing_key_rotated` event), but
 * signatures keep using K1 until `valid_from`, because the CP must not sign with K2 before T.
 */
export class KeyRing {
  #current: SigningKey;
  #previous: SigningKey | undefined;
  #validFrom = 0;
  #transitionExpires = 0;

  constructor(initial: SigningKey) {
    this.#current = initial;
  }

  /** The key that signs events issued at `now`. */
  signer(now: number): SigningKey {
    if (this.#previous !== undefined && now < this.#validFrom) return this.#previous;
    return this.#current;
  }

  get current(): SigningKey {
    return this.#current;
  }

  /** The key retired by the last rotation, kept after its transition ends (for tests). */
  get previous(): SigningKey | undefined {
    return this.#previous;
  }

  view(now: number): SigningKeysView {
    if (this.#previous !== undefined && now < this.#transitionExpires) {
      return {
        current: this.#current.publicKey,
        previous: this.#previous.publicKey,
        transition_expires: new Date(this.#transitionExpires).toISOString(),
      };
    }
    return { current: this.#current.publicKey, previous: null, transition_expires: null };
  }

  /**
   * Switch to `next`. A rotation during a running transition drops the old previous:
   * previous becomes the key that was current.
   */
  rotate(next: SigningKey, validFrom: number, transitionMs: number): void {
    this.#previous = this.#current;
    this.#current = next;
    this.#validFrom = validFrom;
    this.#transitionExpires = validFrom + transitionMs;
  }
}
