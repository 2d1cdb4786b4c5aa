// ApplyFirewall / ReadFirewall against recorded nft transcripts (design.md 5): which nft
// commands run, with which stdin, and that nothing is applied when nothing differs.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ApplyFirewallRequestSchema, Protocol, ReadFirewallRequestSchema, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { privConfigFrom } from "../config.js";
import { fixtureSpec } from "../firewall/testdata/spec.js";
import { createLogger } from "../log.js";
import { TranscriptRunner, fail, ok, type TranscriptEntry } from "../os/runner.js";
import { makeApplyFirewall } from "./apply-firewall.js";
import { makeReadFirewall } from "./read-firewall.js";

const data = (f: string) => readFileSync(join(import.meta.dirname, "../firewall/testdata", f), "utf8");
const config = privConfigFrom({ mesh: { interface: "plexd0" } });
const log = createLogger("silent");
const ctx = { signal: new AbortController().signal, caller: "test" };

const tables = (...names: string[]) => JSON.stringify({ nftables: [{ metainfo: { json_schema_version: 1 } }, ...names.map((name, i) => ({ table: { family: "inet", name, handle: i + 1 } }))] });
/** The recorded listing without the rogue rules and the stray chain: exactly fixtureSpec. */
const cleanTable = (() => {
  const doc = JSON.parse(data("table.json")) as { nftables: Record<string, { chain?: string; name?: string; comment?: string }>[] };
  doc.nftables = doc.nftables.filter((o) => (o.chain ? o.chain.name !== "stray" : o.rule ? /^plexd:0000000[0-9a-e]$/.test(o.rule.comment ?? "") : true));
  return JSON.stringify(doc);
})();

const listTables = (out: string): TranscriptEntry => ({ cmd: ["nft", "-j", "list", "tables", "inet"], result: ok(out) });
const listPlexd = (out: string): TranscriptEntry => ({ cmd: ["nft", "-j", "list", "table", "inet", "plexd"], result: ok(out) });
const applyNft = (result = ok()): TranscriptEntry => ({ cmd: ["nft", "-f", "-"], input: data("table.nft"), result });

function setup(transcript: TranscriptEntry[]) {
  const runner = new TranscriptRunner(transcript);
  return { runner, apply: makeApplyFirewall({ runner, config, log }), read: makeReadFirewall({ runner, config }) };
}
const req = (over: object = {}) => create(ApplyFirewallRequestSchema, { spec: fixtureSpec, ...over });

describe("ApplyFirewall", () => {
  it("creates the table in one nft transaction fed on stdin", async () => {
    const { runner, apply } = setup([listTables(tables("other")), applyNft()]);
    const res = await apply(req(), ctx);
    expect(res.result?.changed).toBe(true);
    expect(res.result?.plan?.[0]).toEqual({ kind: "create_table", detail: "inet plexd" });
    expect(runner.done).toBe(true);
  });

  it("changes nothing when the live table already equals the spec", async () => {
    const { runner, apply } = setup([listTables(tables("other", "plexd")), listPlexd(cleanTable)]);
    const res = await apply(req(), ctx);
    expect(res.result).toEqual({ changed: false, plan: [] });
    expect(runner.done).toBe(true);
  });

  it("replaces a table holding rogue rules", async () => {
    const { runner, apply } = setup([listTables(tables("plexd")), listPlexd(data("table.json")), applyNft()]);
    const res = await apply(req(), ctx);
    expect(res.result?.changed).toBe(true);
    expect(res.result?.plan?.map((s) => s.kind)).toEqual(["set_chain", "remove_chain"]);
    expect(runner.done).toBe(true);
  });

  it("dry_run returns the plan and runs no mutation", async () => {
    const { runner, apply } = setup([listTables(tables("plexd")), listPlexd(data("table.json"))]);
    const res = await apply(req({ dryRun: true }), ctx);
    expect(res.result?.changed).toBe(false);
    expect(res.result?.plan?.length).toBe(2);
    expect(runner.done).toBe(true);
  });

  it("reports a rejected transaction as a failed step with the previous table kept", async () => {
    const { apply } = setup([listTables(tables()), applyNft(fail("Error: Could not process rule: No such file or directory"))]);
    const res = await apply(req(), ctx);
    expect(res.result).toMatchObject({ changed: false, failedStep: "nft_transaction", rolledBack: true });
    expect(res.result?.error).toContain("Could not process rule");
  });

  it("refuses an invalid spec before running anything", async () => {
    const { runner, apply } = setup([]);
    const bad = structuredClone(fixtureSpec);
    (bad.chains[2]!.rules[1] as { iifname?: string }).iifname = "eth0";
    const err = await apply(req({ spec: bad }), ctx).catch((e: unknown) => PlexdError.from(e));
    expect(err).toBeInstanceOf(PlexdError);
    expect((err as PlexdError).code).toBe("invalid_argument");
    expect(runner.ran).toEqual([]);
  });

  it("an empty spec deletes table inet plexd, and is a no-op without one", async () => {
    const del: TranscriptEntry = { cmd: ["nft", "-f", "-"], input: "add table inet plexd\ndelete table inet plexd\n", result: ok() };
    const a = setup([listTables(tables("plexd")), listPlexd(cleanTable), del]);
    expect((await a.apply(create(ApplyFirewallRequestSchema, { spec: {} }), ctx)).result?.changed).toBe(true);
    const b = setup([listTables(tables("other"))]);
    expect((await b.apply(create(ApplyFirewallRequestSchema, { spec: {} }), ctx)).result?.changed).toBe(false);
    expect(a.runner.done && b.runner.done).toBe(true);
  });
});

describe("ReadFirewall", () => {
  it("returns structured rules with ids and flags rogue ones", async () => {
    const { read } = setup([listTables(tables("plexd")), listPlexd(data("table.json"))]);
    const res = await read(create(ReadFirewallRequestSchema), ctx);
    expect(res.tableExists).toBe(true);
    const mesh = res.chains?.find((c) => c.name === "plexd-mesh");
    expect(mesh?.recognised).toBe(true);
    expect(mesh?.rules?.[2]).toMatchObject({
      recognised: true,
      packets: 0n,
      rule: { id: "00000005", iifname: "plexd0", srcCidr: "10.100.0.2/32", dstCidr: "10.100.0.1/32", protocol: Protocol.TCP, portFrom: 8080, portTo: 0, action: RuleAction.ACCEPT },
    });
    expect(mesh?.rules?.filter((r) => !r.recognised)).toHaveLength(4);
    expect(res.chains?.find((c) => c.name === "stray")?.recognised).toBe(false);
  });

  it("reports a missing table without listing it", async () => {
    const { runner, read } = setup([listTables(tables("other"))]);
    expect(await read(create(ReadFirewallRequestSchema), ctx)).toEqual({ tableExists: false, chains: [] });
    expect(runner.done).toBe(true);
  });
});
