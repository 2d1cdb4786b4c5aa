import { readFile } from "node:fs/promises";
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  DeleteReportResponseSchema,
  GetDataResponseSchema,
  GetMetadataValueResponseSchema,
  GetReportResponseSchema,
  GetSecretResponseSchema,
  GetStateResponseSchema,
  PutReportResponseSchema,
  type Entry,
  type GetStateResponse,
} from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { NodeClient } from "../client.js";
import { messageJson, table } from "../format.js";
import { UsageError } from "../usage-error.js";

export const stateTypes = ["metadata", "data", "secret", "report"] as const;
export type StateType = (typeof stateTypes)[number];

export function stateText(s: GetStateResponse): string {
  const out: string[] = [];
  const meta = Object.entries(s.metadata).sort(([a], [b]) => a.localeCompare(b));
  out.push(`metadata (${meta.length})`);
  for (const [k, v] of meta) out.push(`  ${k} = ${v}`);
  out.push(`data (${s.dataKeys.length})`);
  if (s.dataKeys.length > 0) out.push(indent(table(["KEY", "VERSION", "CONTENT TYPE"], s.dataKeys.map((e) => [e.key, String(e.version), e.contentType]))));
  out.push(`secrets (${s.secretKeys.length})`);
  if (s.secretKeys.length > 0) out.push(indent(table(["KEY", "VERSION"], s.secretKeys.map((e) => [e.key, String(e.version)]))));
  out.push(`reports (${s.reportKeys.length})`);
  if (s.reportKeys.length > 0) {
    out.push(indent(table(["KEY", "VERSION", "CONTENT TYPE", "SYNC"], s.reportKeys.map((e) => [e.key, String(e.version), e.contentType, e.syncState]))));
  }
  return out.join("\n");
}

const indent = (text: string): string =>
  text
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");

function entryText(e: Entry | undefined): string {
  if (e === undefined) return "";
  const payload = e.payload === undefined ? null : toJson(ValueSchema, e.payload);
  const head = `# ${e.key} v${e.version} ${e.contentType}`;
  return `${head}\n${typeof payload === "string" && e.contentType !== "application/json" ? payload : JSON.stringify(payload, null, 2)}`;
}

export async function stateSummary(client: NodeClient, json: boolean): Promise<void> {
  const res = await client.state.getState({});
  console.log(json ? messageJson(GetStateResponseSchema, res) : stateText(res));
}

export async function stateGet(client: NodeClient, json: boolean, type: string, key: string): Promise<void> {
  switch (type as StateType) {
    case "metadata": {
      const res = await client.state.getMetadataValue({ key });
      console.log(json ? messageJson(GetMetadataValueResponseSchema, res) : res.value);
      return;
    }
    case "data": {
      const res = await client.state.getData({ key });
      console.log(json ? messageJson(GetDataResponseSchema, res) : entryText(res.entry));
      return;
    }
    case "secret": {
      const res = await client.state.getSecret({ key });
      // The plaintext goes to stdout only, exactly as stored (no trailing newline added in json).
      console.log(json ? messageJson(GetSecretResponseSchema, res) : res.value);
      return;
    }
    case "report": {
      const res = await client.state.getReport({ key });
      console.log(json ? messageJson(GetReportResponseSchema, res) : entryText(res.entry));
      return;
    }
    default:
      throw new UsageError(`unknown state type ${JSON.stringify(type)}: use one of ${stateTypes.join(", ")}`);
  }
}

export interface ReportOptions {
  data?: string;
  dataFile?: string;
  contentType: string;
  ifMatch?: string;
  delete?: boolean;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString("utf8");
}

function parseIfMatch(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,10}$/.test(text) || Number(text) > 2 ** 31 - 1) throw new UsageError(`--if-match must be a version number, got ${JSON.stringify(text)}`);
  return Number(text);
}

export async function stateReport(client: NodeClient, json: boolean, key: string, opts: ReportOptions): Promise<void> {
  const ifMatch = parseIfMatch(opts.ifMatch);
  if (opts.delete === true) {
    if (opts.data !== undefined || opts.dataFile !== undefined) throw new UsageError("--delete takes no --data or --data-file");
    const res = await client.state.deleteReport({ key, ...(ifMatch === undefined ? {} : { ifMatch }) });
    console.log(json ? messageJson(DeleteReportResponseSchema, res) : `deleted report ${key}`);
    return;
  }
  if ((opts.data === undefined) === (opts.dataFile === undefined)) throw new UsageError("give exactly one of --data JSON or --data-file PATH (- for stdin)");
  const text = opts.data ?? (opts.dataFile === "-" ? await readStdin() : await readFile(opts.dataFile!, "utf8"));
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`report data is not valid JSON: ${(err as Error).message}`);
  }
  const res = await client.state.putReport({
    key,
    contentType: opts.contentType,
    payload: fromJson(ValueSchema, payload as JsonValue),
    ...(ifMatch === undefined ? {} : { ifMatch }),
  });
  console.log(json ? messageJson(PutReportResponseSchema, res) : `report ${key} is at version ${res.entry?.version ?? "?"}`);
}
