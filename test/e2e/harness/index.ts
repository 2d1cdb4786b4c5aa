// The e2e harness: network-namespace topologies, processes, users, temp dirs and the checks a
// user would make, with every resource registered for cleanup. See test/e2e/harness.test.ts.
// Vitest users import from "./vitest.js" (adds useHarness); the demo imports this file.
export { RUN_PREFIX, PREFIX_PATTERN, nextId } from "./runId.js";
export {
  registerCleanup,
  cleanupMark,
  cleanupSince,
  cleanupRange,
  cleanupAll,
  cleanupAllSync,
  pendingCleanups,
  withCleanupScope,
  CleanupError,
  type CleanupHandle,
} from "./cleanup.js";
export { run, runSync, nsExec, type ExecOptions, type ExecResult } from "./exec.js";
export {
  addNamespace,
  removeNamespace,
  namespaceName,
  namespacePids,
  killNamespaceProcesses,
  addVethPair,
  addBridge,
  setMaster,
  linkUp,
  linkDown,
  addAddress,
  addRoute,
  setSysctl,
  nftApply,
  listNamespaces,
  assertIfName,
  type VethOptions,
  type RouteOptions,
} from "./netns.js";
export { createTopology, hostInSubnet, type Topology, type TopologyNode, type TopologyOptions } from "./topology.js";
export { addNatSite, natRuleset, type NatMapping, type NatSite, type NatSiteOptions } from "./nat.js";
export {
  spawnInNamespace,
  wrapArgv,
  type SpawnOptions,
  type ProcessHandle,
  type RunAs,
  type ExitInfo,
  type LineMatch,
  type WaitLineOptions,
  type KillOptions,
} from "./process.js";
export { makeTempDir, type TempDirOptions } from "./tempdir.js";
export { keptLogsRoot, preserveLogsSince, forgetLogsSince } from "./logs.js";
export { ensureSystemUsers, type SystemUsers, type Account } from "./users.js";
export {
  ping,
  wgShow,
  parseWgDump,
  nftList,
  tcpConnect,
  tcpListen,
  listLinks,
  listAddresses,
  until,
  type PingOptions,
  type PingResult,
  type WgInterface,
  type WgPeer,
  type NftRuleset,
  type TcpConnectResult,
  type LinkInfo,
  type AddrInfo,
} from "./assert.js";
export { sweepStale, type SweepReport } from "./sweep.js";
