// The one error type shared by every process. `code` mirrors the gRPC status codes
// so an error keeps its meaning when it crosses the privhelper or node-API socket;
// callers branch on `code`, never on message text.
export const errorCodes = [
  "cancelled",
  "unknown",
  "invalid_argument",
  "deadline_exceeded",
  "not_found",
  "already_exists",
  "permission_denied",
  "resource_exhausted",
  "failed_precondition",
  "aborted",
  "out_of_range",
  "unimplemented",
  "internal",
  "unavailable",
  "data_loss",
  "unauthenticated",
] as const;

export type ErrorCode = (typeof errorCodes)[number];

/** gRPC numeric status for each code (index + 1, as in the gRPC spec). */
export function grpcStatusOf(code: ErrorCode): number {
  return errorCodes.indexOf(code) + 1;
}

export function codeOfGrpcStatus(status: number): ErrorCode {
  return errorCodes[status - 1] ?? "unknown";
}

/** Node errno codes that carry a clear meaning, mapped in one place (docs/architecture.md#rules-the-code-keeps). */
const errnoCodes: Record<string, ErrorCode> = {
  ENOENT: "not_found",
  EACCES: "permission_denied",
  EPERM: "permission_denied",
  EEXIST: "already_exists",
  ECONNREFUSED: "unavailable",
  ECONNRESET: "unavailable",
  EPIPE: "unavailable",
  EHOSTUNREACH: "unavailable",
  ENETUNREACH: "unavailable",
  ETIMEDOUT: "deadline_exceeded",
  EAI_AGAIN: "unavailable",
  ENOTFOUND: "unavailable",
  ABORT_ERR: "cancelled",
};

export class PlexdError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PlexdError";
    this.code = code;
  }

  static from(err: unknown): PlexdError {
    if (err instanceof PlexdError) return err;
    if (err instanceof Error) {
      const errno = (err as NodeJS.ErrnoException).code;
      if (err.name === "AbortError") return new PlexdError("cancelled", err.message, { cause: err });
      const grpcCode = (err as { code?: unknown }).code;
      if (typeof grpcCode === "number" && "details" in err) {
        return new PlexdError(codeOfGrpcStatus(grpcCode), String((err as { details: unknown }).details), { cause: err });
      }
      const mapped = errno === undefined ? undefined : errnoCodes[errno];
      return new PlexdError(mapped ?? "unknown", err.message, { cause: err });
    }
    return new PlexdError("unknown", String(err));
  }
}

export function isCancellation(err: unknown): boolean {
  return PlexdError.from(err).code === "cancelled";
}
