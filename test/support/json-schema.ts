import { execa } from "execa";

// Validates a JSON document against a JSON Schema with Debian's python3-jsonschema
// (.ci/setup installs it): a validator nobody here wrote, draft 2020-12. Resolves with the
// violations, one `path: message` line each; empty means valid.

const program = `
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
doc = json.load(sys.stdin)
for e in sorted(Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path)):
    print("/".join(str(p) for p in e.path) + ": " + e.message)
`;

export async function schemaViolations(schemaFile: string, json: string): Promise<string[]> {
  const r = await execa("/usr/bin/python3", ["-c", program, schemaFile], { input: json, reject: false });
  if (r.exitCode !== 0) throw new Error(`python3-jsonschema failed (is it installed? .ci/setup does): ${r.stderr}`);
  return r.stdout.split("\n").filter((l) => l !== "");
}
