/**
 * An error that maps to one HTTP response with the `{error, message}` body of
 * every control-plane error. `extra` members are merged into the body (e.g. `conflicts`);
 * `headers` are added to the response (e.g. `Retry-After`).
 */
export class ApiError extends Error {
  readonly status: number;
  readonly error: string;
  readonly extra: Record<string, unknown> | undefined;
  readonly headers: Record<string, string>;

  constructor(status: number, error: string, message: string, extra?: Record<string, unknown>, headers: Record<string, string> = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.error = error;
    this.extra = extra;
    this.headers = headers;
  }
}

export const badRequest = (message: string): ApiError => new ApiError(400, "bad_request", message);
