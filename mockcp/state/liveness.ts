import type { MockState, NodeRecord } from "./store.js";

/** Unreachable after this many missed heartbeat intervals... */
export const unreachableAfter = 3;
/** ...and offline (removed from its peers' meshes) after this many. */
export const offlineAfter = 10;

/**
 * Marks nodes offline whose last heartbeat is `offlineAfter` intervals old and sends every
 * other active node `peer_removed` for them. Nodes that never sent a heartbeat are
 * left alone: an agent heartbeats as soon as it starts, and contract tests that register
 * nodes by hand must not lose them. Returns the ids that went offline.
 */
export function sweepLiveness(state: MockState): string[] {
  const now = state.now();
  const gone: string[] = [];
  for (const node of state.activeNodes()) {
    if (node.offlineSince !== undefined || node.lastHeartbeatAt === undefined) continue;
    if (now - node.lastHeartbeatAt < offlineAfter * state.heartbeatIntervalMs) continue;
    node.offlineSince = now;
    gone.push(node.id);
    for (const other of state.activeNodes()) {
      if (other.id !== node.id) state.publish(other.id, "peer_removed", { peer_id: node.id });
    }
  }
  return gone;
}

/** A heartbeat from an offline node puts it back: its peers get `peer_added` again. */
export function resumeNode(state: MockState, node: NodeRecord): void {
  if (node.offlineSince === undefined) return;
  node.offlineSince = undefined;
  for (const other of state.meshNodes()) {
    if (other.id !== node.id) state.publish(other.id, "peer_added", { ...state.peerView(other.id, node) });
  }
}
