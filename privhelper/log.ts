// privhelper's own logger. Keys and PSKs never reach a log line: they are redacted by field
// name wherever a request object is logged. No base pid: `pid` in a line is the caller's.
import { pino, type Logger, type LevelWithSilent } from "pino";
import { redactOptions } from "../proto/lib/redact.js";

export type { Logger };

export function createLogger(level: LevelWithSilent = "info", destination?: NodeJS.WritableStream): Logger {
  const options = { base: { name: "plexd-privhelper" }, level, redact: redactOptions(["key"]), timestamp: pino.stdTimeFunctions.isoTime };
  return pino(options, destination ?? pino.destination({ fd: 2, sync: true }));
}
