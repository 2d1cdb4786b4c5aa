// A mistake in how a command was invoked: exit code 2 (docs/operations.md).
export class UsageError extends Error {
  override readonly name = "UsageError";
}
