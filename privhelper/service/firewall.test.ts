// ApplyFirewall / ReadFirewall against recorded nft transcripts: which nft commands run, with
// which stdin, that nothing is applied when nothing differs, and that a call cancelled before
// the transaction changes nothing while one cancelled later is not cut short.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ApplyFirewallRequestSchema, Protocol, ReadFirewallRequestSchema, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { captureLog, until } from "../../test/support/privhelper.js";
import { TranscriptRunner, fail, ok, type TranscriptEntry } from "../../test/support/transcript.js";
import { privConfigFrom } from "../config.js";
import { fixtureSpec } from "../../test/support/firewall-spec.js";
import { createLock } from "../handlers.js";
import { makeApplyFirewall, makeReadFirewall } from "./firewall.js";

const data = (f: string) => readFileSync(join(import.meta.dirname, "../firewall/testdata", f), "utf8");
const config = privConfigFrom({ mesh: { interface: "plexd0" } });
const ctx = (signal = new AbortController().signal) => ({ signal, uid: 1001, pid: 4242 });

const tables = (...names: string[]) => JSON.stringify({ nftables: [{ metainfo: { json_schema_version: 1 } }, ...names.map((name, i) => ({ table: { family: "inet", name, handle: i + 1 } }))] });
/** The recorded listing without the rogue rules and the stray chain: exactly fixtureSpec. */
const cleanTable = (() => {
  const doc = JSON.parse(data("table.json")) as { nftables: Record<string, { chain?: string; name?: string; comment?: string }>[] };
  doc.nftables = doc.nftables.filter((o) => (o.chain ? o.chain.name !== "stray" : o.rule ? /^plexd:0000000[0-9a-e]$/.test(o.rule.comment ?? "") : true));
  return JSON.stringify(doc);
})();

const listTables = (out: string, extra: Partial<TranscriptEntry> = {}): TranscriptEntry => ({ cmd: ["nft", "-j", "list", "tables", "inet"], result: ok(out), ...extra });
const listPlexd = (out: string, extra: Partial<TranscriptEntry> = {}): TranscriptEntry => ({ cmd: ["nft", "-j", "list", "table", "inet", "plexd"], result: ok(out), ...extra });
const applyNft = (result = ok(), extra: Partial<TranscriptEntry> = {}): TranscriptEntry => ({ cmd: ["nft", "-f", "-"], input: data("table.nft"), result, ...extra });

function setup(transcript: TranscriptEntry[]) {
  const runner = new TranscriptRunner(transcript);
  const { log, lines } = captureLog();
  return { runner, lines, apply: makeApplyFirewall({ runner, config, log }, createLock()), read: makeReadFirewall({ runner, config, log }) };
}
const req = (over: object = {}) => create(ApplyFirewallRequestSchema, { spec: fixtureSpec, ...over });

describe("ApplyFirewall", () => {
  it("creates the table in one nft transaction fed on stdin, and logs who asked", async () => {
    const { runner, apply, lines } = setup([listTables(tables("filter")), applyNft()]);
    const res = await apply(req(), ctx());
    expect(res.result).toEqual({ changed: true, plan: [{ kind: "create_table", detail: "inet plexd: 5 chains" }] });
    expect(runner.done).toBe(true);
    expect(lines.find((l) => l.msg === "firewall applied")).toMatchObject({ level: 30, uid: 1001, pid: 4242, chains: 5, rules: 14, steps: 1 });
  });

  it("changes nothing when the live table already equals the spec", async () => {
    const { runner, apply } = setup([listTables(tables("filter", "plexd")), listPlexd(cleanTable)]);
    expect((await apply(req(), ctx())).result).toEqual({ changed: false, plan: [] });
    expect(runner.done).toBe(true);
  });

  it("replaces a table holding rogue rules and a stray chain, naming the chains that differ", async () => {
    const { runner, apply } = setup([listTables(tables("plexd")), listPlexd(data("table.json")), applyNft()]);
    const res = await apply(req(), ctx());
    expect(res.result).toEqual({
      changed: true,
      plan: [
        { kind: "set_chain", detail: "plexd-mesh: 10 rules" },
        { kind: "remove_chain", detail: "stray" },
      ],
    });
    expect(runner.done).toBe(true);
  });

  it("dry_run returns the plan and runs no mutation", async () => {
    const { runner, apply } = setup([listTables(tables("plexd")), listPlexd(data("table.json"))]);
    const res = await apply(req({ dryRun: true }), ctx());
    expect(res.result?.changed).toBe(false);
    expect(res.result?.plan?.map((s) => s.kind)).toEqual(["set_chain", "remove_chain"]);
    expect(runner.done).toBe(true);
  });

  it("reports a rejected transaction as a failed step with the previous table kept", async () => {
    const { apply, lines } = setup([listTables(tables()), applyNft(fail("Error: Could not process rule: No such file or directory\n"))]);
    const res = await apply(req(), ctx());
    expect(res.result).toMatchObject({ changed: false, failedStep: "nft_transaction", rolledBack: true });
    expect(res.result?.error).toContain("Could not process rule");
    expect(lines.find((l) => l.msg === "firewall apply failed")).toMatchObject({ level: 40, uid: 1001 });
  });

  it("refuses an invalid spec before running anything", async () => {
    const { runner, apply } = setup([]);
    const bad = structuredClone(fixtureSpec);
    (bad.chains[2]!.rules[1] as { iifname?: string }).iifname = "eth0";
    const err = await apply(req({ spec: bad }), ctx()).catch((e: unknown) => PlexdError.from(e));
    expect(err).toMatchObject({ code: "invalid_argument" });
    expect(runner.ran).toEqual([]);
  });

  it("an empty spec deletes table inet plexd, and is a no-op without one", async () => {
    const del: TranscriptEntry = { cmd: ["nft", "-f", "-"], input: "add table inet plexd\ndelete table inet plexd\n", result: ok() };
    const a = setup([listTables(tables("plexd")), listPlexd(cleanTable), del]);
    expect((await a.apply(create(ApplyFirewallRequestSchema, { spec: {} }), ctx())).result).toEqual({ changed: true, plan: [{ kind: "delete_table", detail: "inet plexd" }] });
    const b = setup([listTables(tables("filter"))]);
    expect((await b.apply(create(ApplyFirewallRequestSchema, { spec: {} }), ctx())).result?.changed).toBe(false);
    expect(a.runner.done && b.runner.done).toBe(true);
  });

  it("reads with the caller's signal; the transaction gets none", async () => {
    const { runner, apply } = setup([listTables(tables("plexd")), listPlexd(data("table.json")), applyNft()]);
    await apply(req(), ctx());
    expect(runner.ran.map((r) => r.signal)).toEqual([true, true, false]);
  });

  it("a call cancelled before the transaction applies nothing; one cancelled during it is not cut short", async () => {
    const ac = new AbortController();
    const early = setup([listTables(tables("plexd")), listPlexd(data("table.json"), { effect: () => ac.abort(new PlexdError("cancelled", "call cancelled")) })]);
    await expect(early.apply(req(), ctx(ac.signal))).rejects.toMatchObject({ code: "cancelled" });
    expect(early.runner.done).toBe(true);

    const late = new AbortController();
    const l = setup([listTables(tables("plexd")), listPlexd(data("table.json")), applyNft(ok(), { effect: () => late.abort() })]);
    expect((await l.apply(req(), ctx(late.signal))).result?.changed).toBe(true);
    expect(l.runner.done).toBe(true);
  });

  it("applies are serialised on the firewall lock", async () => {
    let release = (): void => undefined;
    const held = new Promise<void>((r) => (release = r));
    const { runner, apply } = setup([listTables(tables()), applyNft(ok(), { effect: () => held }), listTables(tables("plexd")), listPlexd(cleanTable)]);
    const first = apply(req(), ctx());
    const second = apply(req(), ctx());
    await until(() => runner.commands.length >= 2);
    await new Promise((r) => setTimeout(r, 20));
    expect(runner.commands).toEqual(["nft -j list tables inet", "nft -f -"]);
    release();
    expect((await first).result?.changed).toBe(true);
    expect((await second).result?.changed).toBe(false);
    expect(runner.done).toBe(true);
  });
});

describe("ReadFirewall", () => {
  it("returns structured rules with ids and counters, and flags rogue ones", async () => {
    const { runner, read } = setup([listTables(tables("plexd")), listPlexd(data("table.json"))]);
    const res = await read(create(ReadFirewallRequestSchema), ctx());
    expect(runner.ran.every((r) => r.signal)).toBe(true);
    expect(res.tableExists).toBe(true);
    const mesh = res.chains?.find((c) => c.name === "plexd-mesh");
    expect(mesh?.recognised).toBe(true);
    expect(mesh?.rules?.[2]).toMatchObject({
      recognised: true,
      packets: 0n,
      rule: { id: "00000005", iifname: "plexd0", srcCidr: "10.100.0.2/32", dstCidr: "10.100.0.1/32", protocol: Protocol.TCP, portFrom: 8080, portTo: 0, action: RuleAction.ACCEPT },
    });
    const rogue = mesh?.rules?.filter((r) => !r.recognised) ?? [];
    expect(rogue).toHaveLength(4);
    expect(rogue.every((r) => r.raw !== "")).toBe(true);
    expect(res.chains?.find((c) => c.name === "stray")?.recognised).toBe(false);
  });

  it("reports a missing table without listing it", async () => {
    const { runner, read } = setup([listTables(tables("filter"))]);
    expect(await read(create(ReadFirewallRequestSchema), ctx())).toEqual({ tableExists: false, chains: [] });
    expect(runner.done).toBe(true);
  });
});
