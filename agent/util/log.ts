import { pino, type Logger, type LevelWithSilent } from "pino";
import { redactOptions } from "../../proto/lib/redact.js";

export type { Logger };

export function createLogger(opts: { name: string; level?: LevelWithSilent; destination?: NodeJS.WritableStream }): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? "info",
      // Secrets never reach a log line (design.md §4.9).
      redact: redactOptions(),
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination ?? pino.destination({ fd: 2, sync: true }),
  );
}
