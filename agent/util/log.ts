import { createRequire } from "node:module";
import { pino, type DestinationStream, type Logger, type LevelWithSilent } from "pino";
import { redactOptions } from "../../proto/lib/redact.js";

export type { Logger };

/**
 * Where log lines go: JSON on fd 2, unless a person is watching. On a terminal (or with
 * PLEXD_LOG_FORMAT=pretty) lines are rendered by pino-pretty, synchronously in this thread;
 * PLEXD_LOG_FORMAT=json keeps JSON on a terminal too. pino-pretty is loaded only then, from
 * node_modules (scripts/build.mjs keeps it out of the agent bundle), so an agent under
 * systemd never holds its code.
 */
export function logDestination(env: NodeJS.ProcessEnv = process.env, isTTY = process.stderr.isTTY === true, fd = 2): DestinationStream {
  const format = env.PLEXD_LOG_FORMAT ?? (isTTY ? "pretty" : "json");
  if (format !== "pretty") return pino.destination({ fd, sync: true });
  const pretty = createRequire(import.meta.url)("pino-pretty") as (o: Record<string, unknown>) => DestinationStream;
  return pretty({ destination: fd, sync: true, colorize: isTTY && env.NO_COLOR === undefined, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" });
}

export function createLogger(opts: { name: string; level?: LevelWithSilent; destination?: DestinationStream }): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? "info",
      // Secrets never reach a log line (docs/architecture.md#rules-the-code-keeps).
      redact: redactOptions(),
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination ?? logDestination(),
  );
}
