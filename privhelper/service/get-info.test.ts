import { readFileSync } from "node:fs";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { afterEach, describe, expect, it, vi } from "vitest";
import { WireGuardImpl, type GetInfoRequest } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { FakeHost } from "../../test/support/privhelper.js";
import { TranscriptRunner, fail, ok, type TranscriptEntry } from "../../test/support/transcript.js";
import { privConfigFrom } from "../config.js";
import { makeGetInfo } from "./get-info.js";

const ctx = { signal: new AbortController().signal, uid: 0, pid: 1 };
const req = {} as GetInfoRequest;
const modinfo = (result = ok("wireguard\n"), extra: Partial<TranscriptEntry> = {}): TranscriptEntry => ({ cmd: ["modinfo", "-F", "name", "wireguard"], result, ...extra });
const nftList = (result = ok("table inet filter\n")): TranscriptEntry => ({ cmd: ["nft", "list", "tables"], result });

function getInfo(transcript: TranscriptEntry[], host: FakeHost, config = privConfigFrom({})) {
  const runner = new TranscriptRunner(transcript);
  return { runner, getInfo: makeGetInfo({ runner, host, config, startedAtMs: 1_700_000_000_000 }) };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("GetInfo", () => {
  it("finds a kernel module that is installed but not loaded with modinfo, and only reads to find out", async () => {
    const { runner, getInfo: gi } = getInfo([modinfo(), nftList()], new FakeHost({ files: ["/dev/net/tun"], bins: ["modinfo", "nft", "wg", "wireguard-go"] }), privConfigFrom({ mesh: { interface: "plexd7" } }));
    const info = await gi(req, ctx);
    // No throwaway link, nothing created: exactly these two read-only commands.
    expect(runner.commands).toEqual(["modinfo -F name wireguard", "nft list tables"]);
    expect(runner.done).toBe(true);
    expect(info.capabilities).toMatchObject({ wireguard: WireGuardImpl.KERNEL, wireguardGoPath: "/usr/bin/wireguard-go", wgTool: true, nftables: true, tun: true });
    expect(info.problems).toEqual([]);
    expect(info.allowedInterfaces).toEqual(["plexd7"]);
    expect(info.pid).toBe(process.pid);
    expect(timestampDate(info.startedAt as never).getTime()).toBe(1_700_000_000_000);
  });

  it("reports the version in package.json, also when run from the sources", async () => {
    const { getInfo: gi } = getInfo([], new FakeHost({ files: ["/sys/module/wireguard"] }));
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    expect((await gi(req, ctx)).version).toBe(pkg.version);
  });

  it("reports wireguard-go when the module is neither loaded nor installed, and a missing TUN device", async () => {
    const { runner, getInfo: gi } = getInfo([modinfo(fail("modinfo: ERROR: Module wireguard not found.\n", 1)), nftList()], new FakeHost({ bins: ["modinfo", "nft", "wg", "wireguard-go"] }));
    const info = await gi(req, ctx);
    expect(runner.done).toBe(true);
    expect(info.capabilities).toMatchObject({ wireguard: WireGuardImpl.USERSPACE, wireguardGoPath: "/usr/bin/wireguard-go", tun: false });
    expect(info.problems).toEqual(["wireguard-go needs /dev/net/tun, which is missing"]);
  });

  it("a loaded module needs no command; a tool not on PATH is not run and is a problem", async () => {
    const { runner, getInfo: gi } = getInfo([], new FakeHost({ files: ["/sys/module/wireguard"] }));
    const info = await gi(req, ctx);
    expect(runner.ran).toEqual([]);
    expect(info.capabilities).toMatchObject({ wireguard: WireGuardImpl.KERNEL, wireguardGoPath: "", wgTool: false, nftables: false });
    expect(info.problems).toEqual(["wg (wireguard-tools) not on PATH", "nftables unusable: `nft list tables` failed or nft is missing"]);
  });

  it("no WireGuard at all, and an nft that fails", async () => {
    const { getInfo: gi } = getInfo([nftList(fail("Error: Operation not permitted\n", 1))], new FakeHost({ bins: ["nft", "wg"] }));
    const info = await gi(req, ctx);
    expect(info.capabilities).toMatchObject({ wireguard: WireGuardImpl.NONE, nftables: false });
    expect(info.problems).toEqual(["no WireGuard: kernel module absent and wireguard-go not on PATH", "nftables unusable: `nft list tables` failed or nft is missing"]);
  });

  it("answers from the last detection for 30 s, then detects again", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(1_000_000);
    const { runner, getInfo: gi } = getInfo([modinfo(), nftList(), modinfo(fail("", 1)), nftList()], new FakeHost({ bins: ["modinfo", "nft", "wireguard-go"] }));
    expect((await gi(req, ctx)).capabilities?.wireguard).toBe(WireGuardImpl.KERNEL);
    vi.setSystemTime(1_000_000 + 30_000);
    expect((await gi(req, ctx)).capabilities?.wireguard).toBe(WireGuardImpl.KERNEL);
    expect(runner.ran).toHaveLength(2);
    vi.setSystemTime(1_000_000 + 30_001);
    expect((await gi(req, ctx)).capabilities?.wireguard).toBe(WireGuardImpl.USERSPACE);
    expect(runner.done).toBe(true);
  });

  it("concurrent callers share one detection; a failed one is not kept", async () => {
    const boom = () => {
      throw new Error("modinfo: timed out");
    };
    const { runner, getInfo: gi } = getInfo([modinfo(ok(), { effect: boom }), modinfo(), nftList()], new FakeHost({ bins: ["modinfo", "nft"] }));
    const both = await Promise.allSettled([gi(req, ctx), gi(req, ctx)]);
    expect(both.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expect((await gi(req, ctx)).capabilities?.wireguard).toBe(WireGuardImpl.KERNEL);
    expect(runner.done).toBe(true);
  });
});
