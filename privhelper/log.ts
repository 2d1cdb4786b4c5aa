// privhelper's own logger (it may not import agent/). Keys and PSKs never reach a log line:
// they are redacted by field name wherever a request object is logged (design.md 4.9).
import { pino, type Logger, type LevelWithSilent } from "pino";

const secretFields = ["private_key", "privateKey", "preshared_key", "presharedKey", "psk", "token", "secret", "key"];
const redactPaths = secretFields.flatMap((f) => [f, `*.${f}`, `*.*.${f}`, `*.*.*.${f}`, `*.peers[*].${f}`, `spec.peers[*].${f}`]);

export type { Logger };

export function createLogger(level: LevelWithSilent = "info", destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      name: "plexd-privhelper",
      level,
      redact: { paths: redactPaths, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd: 2, sync: true }),
  );
}
