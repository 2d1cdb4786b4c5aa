import type { DesiredStateStore } from "../../state/desired.js";
import type { Logger } from "../../util/log.js";
import { dataChanges, dataMap, metadataChanges, secretChanges, validRefs, type Downstream, type DownstreamChange, type SecretRef } from "./downstream.js";
import type { StateEntry } from "./files.js";

// The node API's downstream view of the agent's desired-state store. The store is the one
// source of truth for metadata, data and the secret index: registration, the periodic
// state pull and node_state_updated / node_secrets_updated all write there (and it is
// persisted in cache/desired.json), so the node API never holds a second copy that could
// drift from what the reconcilers see. This adapter only derives the per-key change
// notifications WatchState needs, from snapshots taken at each store change.

export function storeDownstream(store: DesiredStateStore, log: Logger, signal?: AbortSignal): Downstream {
  const listeners = new Set<(c: DownstreamChange) => void>();
  // Derived views, rebuilt only when the store reports that slice changed (the store's
  // contract: every update names the slices it touched).
  let dataView: Map<string, StateEntry> | undefined;
  let refsView: SecretRef[] | undefined;
  const data = (): Map<string, StateEntry> => (dataView ??= dataMap(store.state.data, log));
  const refs = (): SecretRef[] => (refsView ??= validRefs(store.state.secret_refs));

  // Copies, not references: the comparison must see the state before the change.
  let lastMeta = { ...store.state.metadata };
  let lastData = data();
  let lastRefs = refs();
  const unsubscribe = store.subscribe((slices) => {
    const changes: DownstreamChange[] = [];
    if (slices.has("metadata")) {
      const next = { ...store.state.metadata };
      changes.push({ kind: "metadata", keys: metadataChanges(lastMeta, next) });
      lastMeta = next;
    }
    if (slices.has("data")) {
      dataView = undefined;
      const next = data();
      changes.push({ kind: "data", keys: dataChanges(lastData, next) });
      lastData = next;
    }
    if (slices.has("secret_refs")) {
      refsView = undefined;
      const next = refs();
      changes.push({ kind: "secrets", keys: secretChanges(lastRefs, next) });
      lastRefs = next;
    }
    for (const c of changes) if (c.keys.length > 0) for (const l of listeners) l(c);
  });
  signal?.addEventListener("abort", unsubscribe, { once: true });

  return {
    metadata: () => store.state.metadata,
    data,
    secretRefs: refs,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
