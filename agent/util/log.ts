import { pino, type Logger, type LevelWithSilent } from "pino";

// Field names whose values never reach a log line (design.md 4.9). Matched at the top
// level and one or two objects deep, which covers request bodies and config objects.
const secretFields = [
  "token",
  "identity_token",
  "identityToken",
  "bootstrap_token",
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
];

export const redactPaths = secretFields.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

export type { Logger };

export function createLogger(opts: { name: string; level?: LevelWithSilent; destination?: NodeJS.WritableStream }): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? "info",
      redact: { paths: redactPaths, censor: "[redacted]" },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination ?? pino.destination({ fd: 2, sync: true }),
  );
}
