// The peer set of the spec last applied to each interface, so that a caller may send only
// what changed since (ApplyMeshRequest.base_generation). At 10,000 peers a whole spec is over
// a megabyte on every change; a delta is one peer. It describes what was asked, not the
// kernel: every apply still diffs the resolved spec against the live device. Losing it (a
// restart, a failed apply) only means the caller is told to send the whole spec again.
import { create } from "@bufbuild/protobuf";
import { MeshSpecSchema, type ApplyMeshRequest, type MeshSpec, type WireGuardPeer } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { limits, parseKey } from "../validate.js";

interface Applied {
  generation: bigint;
  peers: Map<string, WireGuardPeer>;
}

export class AppliedSpecs {
  readonly #by = new Map<string, Applied>();
  /** The peer map behind the spec `resolve` built last, which `remember` then keeps as is. */
  #resolved: { spec: MeshSpec; peers: Map<string, WireGuardPeer> } | undefined;

  /** The whole spec a request means: itself, or its base with the delta applied. */
  resolve(req: ApplyMeshRequest): MeshSpec | undefined {
    this.#resolved = undefined;
    const spec = req.spec;
    if (req.baseGeneration === 0n || spec === undefined) {
      if (req.removedPeerKeys.length > 0) throw new PlexdError("invalid_argument", "invalid request:\n  removed_peer_keys: only with base_generation");
      return spec;
    }
    if (req.removedPeerKeys.length > limits.peers) throw new PlexdError("invalid_argument", `invalid request:\n  removed_peer_keys: at most ${limits.peers}`);
    const bad = req.removedPeerKeys.findIndex((k) => parseKey(k) === undefined);
    if (bad !== -1) throw new PlexdError("invalid_argument", `invalid request:\n  removed_peer_keys[${bad}]: must be a 32-byte base64 key`);
    const base = this.#by.get(spec.interface);
    if (base === undefined || base.generation !== req.baseGeneration) {
      throw new PlexdError(
        "failed_precondition",
        `base generation ${req.baseGeneration} of ${spec.interface} is not the last one applied (${base === undefined ? "none" : String(base.generation)}); send the whole spec`,
      );
    }
    const peers = new Map(base.peers);
    for (const k of req.removedPeerKeys) peers.delete(k);
    for (const p of spec.peers) peers.set(p.publicKey, p);
    const whole = create(MeshSpecSchema, { ...spec, peers: [...peers.values()] });
    this.#resolved = { spec: whole, peers };
    return whole;
  }

  remember(iface: string, generation: bigint, spec: MeshSpec): void {
    const resolved = this.#resolved;
    this.#resolved = undefined;
    if (generation === 0n) {
      this.#by.delete(iface);
      return;
    }
    let peers: Map<string, WireGuardPeer>;
    if (resolved?.spec === spec) peers = resolved.peers;
    else {
      peers = new Map();
      for (const p of spec.peers) peers.set(p.publicKey, p);
    }
    this.#by.set(iface, { generation, peers });
  }

  forget(iface: string): void {
    this.#by.delete(iface);
  }
}
