// Shared by the deploy-*.test.ts files: where the deployment kits are, the external validators
// they need (which must be installed: .ci/setup does it, and a missing one fails the test
// instead of skipping it), and plexd's own configuration check for configs embedded in them.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import { checkConfigFile } from "../../agent/config/check.js";
import { privConfigFrom } from "../../privhelper/config.js";

export const repoRoot = resolve(import.meta.dirname, "../..");
export const deployDir = join(repoRoot, "deploy");

/** Absolute path of a tool, or an error naming the Debian package that provides it. */
export function requireTool(tool: string, debianPackage: string): string {
  try {
    return execFileSync("sh", ["-c", 'command -v "$1"', "sh", tool], { encoding: "utf8" }).trim();
  } catch {
    throw new Error(`${tool} is not installed (Debian package ${debianPackage}; .ci/setup installs it)`);
  }
}

export function withTempDir<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "plexd-deploy-"));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function withTempDirAsync<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "plexd-deploy-"));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every YAML document of a file (multi-document manifests), as plain values; parse errors throw. */
export function readYamlDocuments(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, "utf8"), { uniqueKeys: true });
  if (!Array.isArray(docs)) throw new Error(`${file}: empty`);
  return docs.map((d, i) => {
    if (d.errors.length > 0) throw new Error(`${file} document ${i + 1}: ${d.errors.map((e) => e.message).join("; ")}`);
    return d.toJS() as unknown;
  });
}

/**
 * Runs a configuration text through what `plexd config check` runs (and privhelper's own
 * reading of the same file) with exactly the environment given. Returns the problems, one
 * line each; empty means both accept it.
 */
export function plexdConfigProblems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  return withTempDir((dir) => {
    const file = join(dir, "config.yaml");
    writeFileSync(file, text, { mode: 0o600 });
    const problems: string[] = [];
    const agent = checkConfigFile(file, env);
    if (agent.exitCode !== 0) problems.push(agent.output);
    try {
      privConfigFrom(parseAllDocuments(text)[0]?.toJS());
    } catch (err) {
      problems.push(`privhelper: ${err instanceof Error ? err.message : String(err)}`);
    }
    return problems;
  });
}
