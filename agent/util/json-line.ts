/**
 * One line of a journal as a JSON object, or undefined: the zeros not yet written or a line torn
 * by a crash mid-write read as the end of the journal, never as an error.
 */
export function parseJsonLine<T>(line: string): T | undefined {
  if (line === "") return undefined;
  try {
    const v = JSON.parse(line) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as T) : undefined;
  } catch {
    return undefined;
  }
}
