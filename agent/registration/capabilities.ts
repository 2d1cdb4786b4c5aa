import { version } from "../../proto/lib/version.js";

// Capabilities object of docs/mockcp.md#control-plane-api-what-agents-use. Built-in actions and hooks join
// the set when the actions feature lands; until then both lists are empty, which the
// contract allows (the lists are always arrays).
export interface Capabilities {
  binary: { version: string; checksum: string };
  builtin_actions: unknown[];
  hooks: unknown[];
}

export function buildCapabilities(binaryChecksum: string): Capabilities {
  return { binary: { version, checksum: binaryChecksum }, builtin_actions: [], hooks: [] };
}
