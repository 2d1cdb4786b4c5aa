import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { ConfigError, loadConfig } from "./load.js";

// Every testdata/invalid/NAME.yaml is paired with NAME.expected: the exact issue lines
// (`<file>` stands for the file's path), order-insensitive, none missing, none extra.
const dir = join(fileURLToPath(new URL(".", import.meta.url)), "testdata", "invalid");
const names = readdirSync(dir)
  .filter((f) => f.endsWith(".yaml"))
  .map((f) => f.slice(0, -".yaml".length))
  .sort();

function issueLines(file: string): string[] {
  try {
    loadConfig({ file, env: {} });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).format().split("\n");
  }
  throw new Error(`${file} was accepted`);
}

describe("invalid config files", () => {
  test("there are at least 15 cases, each with an expectation", () => {
    expect(names.length).toBeGreaterThanOrEqual(15);
    for (const n of names) expect(() => readFileSync(join(dir, `${n}.expected`), "utf8"), n).not.toThrow();
  });

  test.each(names)("%s", (name) => {
    const file = join(dir, `${name}.yaml`);
    const expected = readFileSync(join(dir, `${name}.expected`), "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => l.replaceAll("<file>", file));
    expect(issueLines(file).sort()).toEqual(expected.sort());
  });
});
