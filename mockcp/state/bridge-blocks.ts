// Per-node bridge blocks of the state document (docs/mockcp.md, docs/bridge.md): what a test
// sets is served by GET /v1/nodes/{id}/state as `bridge_config`, `relay_config`, ... A block
// never set is absent, which tells the bridge to leave that service as its config says.
export const bridgeBlockNames = ["bridge_config", "relay_config", "user_access_config", "ingress_config", "site_to_site_config"] as const;
export type BridgeBlockName = (typeof bridgeBlockNames)[number];

/** The event that makes a bridge pull the block at once (the relay has none: its sessions come one by one). */
export const blockUpdatedEvent: Partial<Record<BridgeBlockName, string>> = {
  bridge_config: "bridge_config_updated",
  user_access_config: "user_access_config_updated",
  ingress_config: "ingress_config_updated",
  site_to_site_config: "site_to_site_config_updated",
};

export class BridgeBlocks {
  readonly #byNode = new Map<string, Partial<Record<BridgeBlockName, Record<string, unknown>>>>();

  set(nodeId: string, block: BridgeBlockName, value: Record<string, unknown> | undefined): void {
    const m = { ...(this.#byNode.get(nodeId) ?? {}) };
    if (value === undefined) delete m[block];
    else m[block] = value;
    this.#byNode.set(nodeId, m);
  }

  of(nodeId: string): Partial<Record<BridgeBlockName, Record<string, unknown>>> {
    return this.#byNode.get(nodeId) ?? {};
  }
}
