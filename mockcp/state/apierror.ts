/**
 * An error that maps to one HTTP response with the `{error, message}` body of
 * control-plane §2.5. `extra` members are merged into the body (e.g. `conflicts`).
 */
export class ApiError extends Error {
  readonly status: number;
  readonly error: string;
  readonly extra: Record<string, unknown> | undefined;

  constructor(status: number, error: string, message: string, extra?: Record<string, unknown>) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.error = error;
    this.extra = extra;
  }
}

export const badRequest = (message: string): ApiError => new ApiError(400, "bad_request", message);
