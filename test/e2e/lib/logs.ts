// The agent logs one JSON object per line (pino); tests read them like an operator's
// log pipeline would.
export type LogLine = Record<string, unknown> & { msg?: string };

export function logLines(output: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of output.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // a line cut by the harness while the process was still writing
    }
  }
  return out;
}

export function linesWith(output: string, msg: string, fields: Record<string, unknown> = {}): LogLine[] {
  return logLines(output).filter((l) => l.msg === msg && Object.entries(fields).every(([k, v]) => l[k] === v));
}
