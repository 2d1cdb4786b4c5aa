// A mistake in how a command was invoked: exit code 2 (spec/node-agent.md §7.1).
export class UsageError extends Error {
  override readonly name = "UsageError";
}
