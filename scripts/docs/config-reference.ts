// Renders docs/config-reference.md from the zod schema (agent/config/), so the reference cannot
// drift from what the agent accepts. The text of each key lives in the schema as
// `.meta({ description, allowed?, default_doc? })`; which keys a reload applies comes from
// agent/config/reload.ts and the environment variables from agent/config/env.ts. A key without a
// description is an error here, so a new key cannot ship undocumented.
import * as z from "zod";
import { envOverrides } from "../../agent/config/env.js";
import { isLive } from "../../agent/config/reload.js";
import { ConfigSchema } from "../../agent/config/schema.js";

interface Node {
  type?: string | string[];
  format?: string;
  description?: string;
  allowed?: string;
  default_doc?: string;
  default?: unknown;
  enum?: string[];
  const?: string;
  properties?: Record<string, Node>;
  required?: string[];
  items?: Node;
  oneOf?: Node[];
  additionalProperties?: Node | boolean;
}

const code = (s: string): string => `\`${s}\``;
const cell = (s: string): string => s.replaceAll("|", "\\|").replaceAll("\n", " ");

function literal(v: unknown): string {
  if (typeof v === "string") return v === "" ? '`""`' : code(v);
  if (Array.isArray(v)) return v.length === 0 ? "`[]`" : code(`[${v.map((x) => String(x)).join(", ")}]`);
  if (v === null) return "`null` (unlimited)";
  if (typeof v === "object") return "`{}`";
  return code(String(v));
}

const isObject = (n: Node): boolean => n.type === "object" && n.properties !== undefined;
const isObjectList = (n: Node): boolean => n.type === "array" && n.items !== undefined && (isObject(n.items) || n.items.oneOf !== undefined);

function typeName(n: Node): string {
  if (n.format === "duration") return "duration";
  if (n.format === "size") return "size";
  if (n.enum !== undefined) return "enum";
  if (n.type === "array" && n.items !== undefined) return isObjectList(n) ? "list of mappings" : `list of ${typeName(n.items)}`;
  if (n.type === "object") return n.properties === undefined ? "mapping of string to string" : "mapping";
  if (Array.isArray(n.type)) return n.type.filter((t) => t !== "null").join(" or ") + (n.type.includes("null") ? " or null" : "");
  return n.type ?? "any";
}

function allowed(n: Node): string {
  const parts: string[] = [];
  const values = n.enum ?? n.items?.enum;
  if (values !== undefined) parts.push(values.map(code).join(", "));
  if (n.allowed !== undefined) parts.push(n.allowed);
  return parts.join("; ");
}

/** Dotted path as reload.ts sees it: list markers dropped. */
const reloadPath = (path: string): string => path.replaceAll("[]", "");

function row(path: string, n: Node, required: boolean): string {
  if (n.description === undefined) throw new Error(`config key ${path} has no description: add .meta({ description }) to its schema in agent/config/`);
  const def = n.default_doc ?? ("default" in n ? literal(n.default) : required ? "required" : "—");
  const env = envOverrides.find((o) => o.path.join(".") === path);
  const desc = n.description + (env === undefined ? "" : ` Environment: ${code(env.variable)}.`);
  const reload = isLive(reloadPath(path)) ? "live" : "restart";
  return `| ${code(path)} | ${typeName(n)} | ${cell(def)} | ${cell(allowed(n))} | ${reload} | ${cell(desc)} |`;
}

const header = ["| Key | Type | Default | Allowed | Reload | Description |", "|---|---|---|---|---|---|"];

/** One section: its table of plain keys, then a sub-section per nested mapping or list of mappings. */
function section(path: string, n: Node, title: string, depth: number, note?: string): string[] {
  const out = [`${"#".repeat(depth)} ${title}`, ""];
  if (note !== undefined) out.push(note, "");
  if (n.description !== undefined && path !== "") out.push(n.description, "");
  const rows: string[] = [];
  const subs: string[][] = [];
  const req = new Set(n.required ?? []);
  for (const [key, child] of Object.entries(n.properties ?? {})) {
    const p = path === "" ? key : `${path}.${key}`;
    if (isObject(child)) {
      if (path === "") continue; // top-level sections are rendered by the caller
      subs.push(section(p, child, code(p), depth + 1));
    } else if (isObjectList(child)) {
      rows.push(row(p, child, req.has(key)));
      subs.push(listSection(`${p}[]`, child, depth + 1));
    } else {
      rows.push(row(p, child, req.has(key)));
    }
  }
  if (rows.length > 0) out.push(...header, ...rows, "");
  for (const s of subs) out.push(...s);
  return out;
}

function listSection(path: string, list: Node, depth: number): string[] {
  const items = list.items as Node;
  if (items.oneOf === undefined) return section(path, items, `${code(path)} (each item)`, depth);
  // A discriminated union: one table, each variant's keys marked with its `type`.
  const out = [`${"#".repeat(depth)} ${code(path)} (each item)`, "", ...header];
  const types = items.oneOf.map((v) => v.properties?.type?.const ?? "?");
  out.push(row(`${path}.type`, { type: "string", enum: types, description: "Provider type; selects the keys below." }, true));
  for (const v of items.oneOf) {
    for (const [key, child] of Object.entries(v.properties ?? {})) {
      if (key === "type") continue;
      out.push(row(`${path}.${key}`, { ...child, description: `With \`type: ${v.properties?.type?.const ?? "?"}\`: ${child.description ?? ""}` }, false));
    }
  }
  return [...out, ""];
}

const intro = `# Configuration reference

<!-- Generated by \`npm run docs\` from the zod schema in agent/config/ (the .meta() text of each
key). Do not edit by hand: change the schema and regenerate; a unit test fails while this file is stale. -->

plexd reads one YAML file: \`--config FILE\`, else \`PLEXD_CONFIG\`, else \`/etc/plexd/config.yaml\`.
Values are taken in this order, each over the one before: built-in defaults, the file, the
environment variables listed below, command-line flags (\`--api\`, \`--mode\`, \`--log-level\`).
The same file is read by privhelper for the keys marked so. Check a file before using it:
\`plexd config check FILE\` (\`-o json\` for scripts); every problem is listed with its key path
and the agent does not start (exit 2).

- **Unknown keys are errors**, so a misspelt key never goes unnoticed.
- **Durations** are strings with units \`ms\`, \`s\`, \`m\`, \`h\` (\`500ms\`, \`30s\`, \`1h30m\`); bare
  numbers are refused. **Sizes** are integer bytes or a number with suffix \`K\`, \`M\` or \`G\`
  (powers of 1024).
- **"when enabled"**: a disabled section may hold any well-typed values; its range checks run
  only while its \`enabled\` is true.
- **Reload**: \`live\` keys take effect on \`systemctl reload plexd\`, \`plexd reload\` or SIGHUP;
  \`restart\` keys keep their running value until \`systemctl restart plexd\` (the reload lists them
  under \`restart_required\`). See [operations.md](operations.md#reload-without-restart).
`;

function environment(): string[] {
  return [
    "## Environment variables",
    "",
    "Only these variables are read; there is no generic key-to-variable mapping. An empty variable",
    "counts as unset; an unparsable one is a start-up error naming it. Booleans accept `true`,",
    "`false`, `1`, `0`. Besides them, `PLEXD_CONFIG` names the file and the variable named by",
    "`token.env` (default `PLEXD_BOOTSTRAP_TOKEN`) may hold the bootstrap token.",
    "",
    "| Variable | Key |",
    "|---|---|",
    ...envOverrides.map((o) => `| ${code(o.variable)} | ${code(o.path.join("."))} |`),
    "",
  ];
}

/** The whole page. Pure: the same schema always gives the same text. */
export function renderConfigReference(): string {
  const root = z.toJSONSchema(ConfigSchema, { io: "input", unrepresentable: "any" }) as Node;
  const out = [intro, ...section("", root, "Top level", 2)];
  for (const [key, child] of Object.entries(root.properties ?? {})) {
    if (isObject(child)) out.push(...section(key, child, code(key), 2));
  }
  out.push(...environment());
  return out.join("\n").replace(/\n+$/, "\n");
}
