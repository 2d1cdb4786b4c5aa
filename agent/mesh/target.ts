import { randomInt } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ApplyMeshRequestSchema, MeshSpecSchema, WireGuardPeerSchema, type MeshSpec, type WireGuardPeer } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Peer } from "./peer.js";
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
const generationField = ApplyMeshRequestSchema.field.generation.number;
const baseField = ApplyMeshRequestSchema.field.baseGeneration.number;
const removedField = ApplyMeshRequestSchema.field.removedPeerKeys.number;

/**
 * Peers are kept in chunks that cache their concatenated bytes: joining 10,000 small arrays
 * one by one takes milliseconds, joining 40 chunks takes a memory copy. A change re-joins
 * its own chunk only.
 */
const chunkSize = 256;

interface Chunk {
  entries: Map<string, Entry>;
  bytes: Uint8Array | undefined;
}

function join(parts: Iterable<Uint8Array>, length: number, into = Buffer.allocUnsafe(length), at = 0): Buffer {
  for (const p of parts) {
    into.set(p, at);
    at += p.length;
  }
  return into;
}

export class MeshTarget {
  readonly #entries = new Map<string, Entry>();
  readonly #chunkOf = new Map<string, Chunk>();
  readonly #chunks: Chunk[] = [];
  #header: { key: string; value: MeshHeader; bytes: Uint8Array } | undefined;
  #keepalive = 0;
  /** Bumped by every change; a reconciler compares it with the version it last applied. */
  version = 0;
  #request: { version: number; bytes: Uint8Array } | undefined;
  #buffer = Buffer.alloc(0);
  /**
   * Changes not yet confirmed by privhelper, each with the version that made it, so a delta
   * from any confirmed version can be built and confirmation prunes only what it covered.
   */
  readonly #changedAt = new Map<string, number>();
  readonly #removedAt = new Map<string, number>();
  /** Generations are this process's: a privhelper memo left by an earlier agent never matches. */
  readonly #epoch = BigInt(randomInt(1, 2 ** 20)) << 32n;

  /** The generation a request built now carries. */
  get generation(): bigint {
    return this.#epoch + BigInt(this.version);
  }

  setHeader(h: MeshHeader, keepaliveSeconds: number): void {
    const key = JSON.stringify([h.interface, h.privateKey, h.listenPort, h.mtu, h.addresses]);
    if (keepaliveSeconds !== this.#keepalive) {
      // Part of every peer's encoding: all of them again (a config change, not an event).
      this.#keepalive = keepaliveSeconds;
      this.version++;
      for (const [id, e] of this.#entries) {
        this.#put(id, this.#encode(e.source));
        this.#changedAt.set(id, this.version);
      }
    }
    if (this.#header?.key === key) return;
    this.#header = { key, value: h, bytes: toBinary(MeshSpecSchema, create(MeshSpecSchema, { ...h, peers: [] })) };
    this.version++;
  }

  /** Makes peer `id` part of the target (`peer` given) or not (undefined). */
  setPeer(id: string, peer: Peer | undefined): void {
    const had = this.#entries.get(id);
    if (peer === undefined) {
      if (had === undefined) return;
      this.#entries.delete(id);
      const chunk = this.#chunkOf.get(id)!;
      chunk.entries.delete(id);
      chunk.bytes = undefined;
      this.#chunkOf.delete(id);
      this.version++;
      this.#changedAt.delete(id);
      this.#removedAt.set(had.message.publicKey, this.version);
      return;
    }
    if (had?.source === peer) return;
    const entry = this.#encode(peer);
    this.#put(id, entry);
    this.version++;
    this.#changedAt.set(id, this.version);
    if (had !== undefined && had.message.publicKey !== entry.message.publicKey) this.#removedAt.set(had.message.publicKey, this.version);
  }

  /** privhelper applied the request of `version`: changes up to it need no resending. */
  confirmed(version: number): void {
    for (const [id, v] of this.#changedAt) if (v <= version) this.#changedAt.delete(id);
    for (const [k, v] of this.#removedAt) if (v <= version) this.#removedAt.delete(k);
  }

  /**
   * ApplyMeshRequest for the current version as a delta on `baseVersion`, which privhelper
   * applied last: the header, the peers changed since, the keys removed since. Its size
   * follows the change, not the mesh.
   */
  deltaBytes(baseVersion: number): Uint8Array {
    const parts = [this.#header?.bytes ?? new Uint8Array()];
    for (const [id, v] of this.#changedAt) {
      const e = v > baseVersion ? this.#entries.get(id) : undefined;
      if (e !== undefined) parts.push(e.bytes);
    }
    const length = parts.reduce((n, p) => n + p.length, 0);
    const w = new BinaryWriter().tag(specField, WireType.LengthDelimited).uint32(length).raw(join(parts, length));
    w.tag(generationField, WireType.Varint).uint64(this.generation);
    w.tag(baseField, WireType.Varint).uint64(this.#epoch + BigInt(baseVersion));
    for (const [k, v] of this.#removedAt) if (v > baseVersion) w.tag(removedField, WireType.LengthDelimited).string(k);
    return w.finish();
  }

  #put(id: string, entry: Entry): void {
    this.#entries.set(id, entry);
    let chunk = this.#chunkOf.get(id);
    if (chunk === undefined) {
      const last = this.#chunks.at(-1);
      chunk = last !== undefined && last.entries.size < chunkSize ? last : { entries: new Map(), bytes: undefined };
      if (chunk !== last) this.#chunks.push(chunk);
      this.#chunkOf.set(id, chunk);
    }
    chunk.entries.set(id, entry);
    chunk.bytes = undefined;
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

  /**
   * ApplyMeshRequest{spec} as bytes, built at most once per version. The bytes live in one
   * buffer that the next version overwrites (a fresh megabyte per event costs more in page
   * faults than the copy itself): use them before asking again. The kernel reconciler sends
   * them and awaits the answer before it renders the next version.
   */
  requestBytes(): Uint8Array {
    if (this.#request?.version === this.version) return this.#request.bytes;
    const parts = [this.#header?.bytes ?? new Uint8Array()];
    for (const c of this.#chunks) {
      if (c.bytes === undefined) {
        let n = 0;
        for (const e of c.entries.values()) n += e.bytes.length;
        c.bytes = join([...c.entries.values()].map((e) => e.bytes), n);
      }
      parts.push(c.bytes);
    }
    const length = parts.reduce((n, p) => n + p.length, 0);
    const prefix = new BinaryWriter().tag(specField, WireType.LengthDelimited).uint32(length).finish();
    const suffix = new BinaryWriter().tag(generationField, WireType.Varint).uint64(this.generation).finish();
    const total = prefix.length + length + suffix.length;
    if (this.#buffer.length < total) this.#buffer = Buffer.allocUnsafe(Math.ceil(total * 1.25));
    const out = join(parts, length, this.#buffer.subarray(0, total), prefix.length);
    out.set(prefix, 0);
    out.set(suffix, prefix.length + length);
    this.#request = { version: this.version, bytes: out };
    return out;
  }

  /** The same target as a message (drift checks, logs, tests), peers in key order. */
  spec(): MeshSpec {
    const peers = [...this.#entries.values()].map((e) => e.message).sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1));
    return create(MeshSpecSchema, { ...(this.#header?.value ?? {}), peers });
  }
}
