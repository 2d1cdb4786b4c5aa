// Exit codes shared by every command (docs/operations.md).
export const exitCodes = {
  ok: 0,
  error: 1,
  usage: 2,
  agentUnreachable: 3,
  notFound: 4,
  permissionDenied: 5,
  conflict: 6,
  controlPlaneUnavailable: 7,
  integrity: 8,
} as const;
