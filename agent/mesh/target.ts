import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ApplyMeshRequestSchema, MeshSpecSchema, WireGuardPeerSchema, type MeshSpec, type WireGuardPeer } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Peer } from "../registration/register.js";
import { meshPeer, type MeshHeader } from "./spec.js";

// The mesh target kept ready to send. ApplyMesh always carries the whole peer set (the
// privhelper contract is declarative), but a peer event changes one peer: each peer is
// encoded once, when it changes, and a request is the concatenation of those bytes — the
// protobuf encoding of a repeated field is exactly that. So the cost of an event is one
// peer's encoding plus a memory copy, not 10,000 message builds and a full serialisation.

interface Entry {
  /** The store's object this entry was made from: peers are replaced, never mutated. */
  source: Peer;
  message: WireGuardPeer;
  /** `peers` field tag, length and the encoded WireGuardPeer. */
  bytes: Uint8Array;
}

const peersField = MeshSpecSchema.field.peers.number;
const specField = ApplyMeshRequestSchema.field.spec.number;

export class MeshTarget {
  readonly #entries = new Map<string, Entry>();
  #header: { key: string; value: MeshHeader; bytes: Uint8Array } | undefined;
  #keepalive = 0;
  /** Bumped by every change; a reconciler compares it with the version it last applied. */
  version = 0;
  #request: { version: number; bytes: Uint8Array } | undefined;

  setHeader(h: MeshHeader, keepaliveSeconds: number): void {
    const key = JSON.stringify([h.interface, h.privateKey, h.listenPort, h.mtu, h.addresses]);
    if (keepaliveSeconds !== this.#keepalive) {
      // Part of every peer's encoding: all of them again (a config change, not an event).
      this.#keepalive = keepaliveSeconds;
      for (const [id, e] of this.#entries) this.#entries.set(id, this.#encode(e.source));
      this.version++;
    }
    if (this.#header?.key === key) return;
    this.#header = { key, value: h, bytes: toBinary(MeshSpecSchema, create(MeshSpecSchema, { ...h, peers: [] })) };
    this.version++;
  }

  /** Makes peer `id` part of the target (`peer` given) or not (undefined). */
  setPeer(id: string, peer: Peer | undefined): void {
    const had = this.#entries.get(id);
    if (peer === undefined) {
      if (had !== undefined && this.#entries.delete(id)) this.version++;
      return;
    }
    if (had?.source === peer) return;
    this.#entries.set(id, this.#encode(peer));
    this.version++;
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }

  ids(): IterableIterator<string> {
    return this.#entries.keys();
  }

  get size(): number {
    return this.#entries.size;
  }

  #encode(peer: Peer): Entry {
    const message = meshPeer(peer, this.#keepalive);
    const bytes = new BinaryWriter().tag(peersField, WireType.LengthDelimited).bytes(toBinary(WireGuardPeerSchema, message)).finish();
    return { source: peer, message, bytes };
  }

  /** ApplyMeshRequest{spec} as bytes, built at most once per version. */
  requestBytes(): Uint8Array {
    if (this.#request?.version === this.version) return this.#request.bytes;
    const header = this.#header?.bytes ?? new Uint8Array();
    let length = header.length;
    for (const e of this.#entries.values()) length += e.bytes.length;
    const prefix = new BinaryWriter().tag(specField, WireType.LengthDelimited).uint32(length).finish();
    const out = Buffer.allocUnsafe(prefix.length + length);
    out.set(prefix, 0);
    let at = prefix.length;
    out.set(header, at);
    at += header.length;
    for (const e of this.#entries.values()) {
      out.set(e.bytes, at);
      at += e.bytes.length;
    }
    this.#request = { version: this.version, bytes: out };
    return out;
  }

  /** The same target as a message (drift checks, logs, tests), peers in key order. */
  spec(): MeshSpec {
    const peers = [...this.#entries.values()].map((e) => e.message).sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1));
    return create(MeshSpecSchema, { ...(this.#header?.value ?? {}), peers });
  }
}
