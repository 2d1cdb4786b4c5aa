import { version } from "../../proto/lib/version.js";

// The Capabilities object the control plane receives at registration and in every capability
// update: the binary, the built-in actions and the declared hooks (docs/actions.md).
export interface Capabilities {
  binary: { version: string; checksum: string };
  builtin_actions: unknown[];
  hooks: unknown[];
}

export type ActionCapabilities = Pick<Capabilities, "builtin_actions" | "hooks">;

export function buildCapabilities(binaryChecksum: string, actions: ActionCapabilities = { builtin_actions: [], hooks: [] }): Capabilities {
  return { binary: { version, checksum: binaryChecksum }, builtin_actions: actions.builtin_actions, hooks: actions.hooks };
}
