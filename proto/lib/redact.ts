// Field names whose values never reach a log line (docs/architecture.md#rules-the-code-keeps): the one list every
// process hands to pino's `redact`. Matched at the top level, up to three objects deep, and in
// each element of a `peers` list, which covers request bodies, specs and config objects.

/** Secret-bearing field names in the spellings plexd uses (wire snake_case, proto camelCase). */
export const secretFields: readonly string[] = Object.freeze([
  "token",
  "identity_token",
  "identityToken",
  "bootstrap_token",
  "bootstrapToken",
  "private_key",
  "privateKey",
  "node_secret_key",
  "nodeSecretKey",
  "psk",
  "preshared_key",
  "presharedKey",
  "secret",
  "value",
  "ciphertext",
  "authorization",
  "Authorization",
  "password",
]);

export const redactCensor = "[redacted]";

/** pino redact paths for `fields`. */
export function redactPaths(fields: readonly string[] = secretFields): string[] {
  return fields.flatMap((f) => [f, `*.${f}`, `*.*.${f}`, `*.*.*.${f}`, `peers[*].${f}`, `*.peers[*].${f}`]);
}

/**
 * pino's `redact` option: the shared fields plus `extra` ones a process logs under a name
 * that is a secret only there (privhelper's `key`, for one; elsewhere `key` names a data entry).
 */
export function redactOptions(extra: readonly string[] = []): { paths: string[]; censor: string } {
  return { paths: redactPaths([...secretFields, ...extra]), censor: redactCensor };
}
