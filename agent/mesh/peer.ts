import { z } from "zod";

// A peer as the control plane sends it (docs/mockcp.md#control-plane-api-what-agents-use), in register, state,
// keys/rotate, peer_added and peer_key_rotated. Parsing is deliberately lenient: a peer with a
// usable id is always kept, whatever else is wrong with it, so that admission can quarantine
// it with a reason (and a later peer_removed can remove it) instead of the whole event or state
// document being thrown away — which would hold back every other peer's change with it.

export interface Peer {
  id: string;
  public_key: string;
  mesh_ip: string;
  /** `host:port` (IP literal or DNS name) or "" while unknown. */
  endpoint: string;
  allowed_ips: string[];
  psk: string;
  /** Not in the API's Peer object; a control plane may send it (mockcp does). Shown only. */
  hostname?: string;
  /** Set when a field had the wrong JSON type; such a peer is never admitted. */
  malformed?: string;
}

/** Ids longer than this are not ids anyone should have to read in a log. */
export const maxPeerIdLength = 256;

type Obj = Record<string, unknown>;

function toPeer(o: Obj & { id: string }): Peer {
  const problems: string[] = [];
  const text = (field: string, optional: boolean): string => {
    const v = o[field];
    if (typeof v === "string") return v;
    if (optional && v == null) return "";
    problems.push(`${field}: ${v == null ? "required" : "must be a string"}`);
    return "";
  };
  const list = (field: string): string[] => {
    const v = o[field];
    if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v as string[];
    if (v != null) problems.push(`${field}: must be a list of strings`);
    return [];
  };
  const peer: Peer = {
    id: o.id,
    public_key: text("public_key", false),
    mesh_ip: text("mesh_ip", false),
    endpoint: text("endpoint", true),
    allowed_ips: list("allowed_ips"),
    psk: text("psk", false),
  };
  // Display only: a hostname that is not a short string is dropped, never a reason to quarantine.
  if (typeof o.hostname === "string" && o.hostname.length > 0 && o.hostname.length <= 253) peer.hostname = o.hostname;
  if (problems.length > 0) peer.malformed = problems.join("; ");
  return peer;
}

/** One peer: fails only without a usable `id` (such a peer cannot even be named). */
export const peerSchema = z.looseObject({ id: z.string().min(1).max(maxPeerIdLength) }).transform((o) => toPeer(o));

/** A peer list: entries without a usable id are left out, the others kept (bad ones to be quarantined). */
export const peerListSchema = z
  .array(z.unknown())
  .nullish()
  .transform((list) =>
    (list ?? []).flatMap((item) => {
      const r = peerSchema.safeParse(item);
      return r.success ? [r.data] : [];
    }),
  );
