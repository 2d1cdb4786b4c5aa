import { describe, expect, it } from "vitest";
import { createLogger } from "../util/log.js";
import { EndpointResolver } from "./endpoints.js";
import { PeerAdmission, type AdmissionContext } from "./admission.js";
import type { Peer } from "./peer.js";

const log = createLogger({ name: "test", level: "silent" });
const enoent = (code: string) => Object.assign(new Error(code), { code });
const flush = () => new Promise((r) => setTimeout(r, 0));
const peer = (id: string, endpoint: string, i: number): Peer => ({ id, public_key: Buffer.alloc(32, i).toString("base64"), mesh_ip: `10.100.0.${i}`, endpoint, allowed_ips: [], psk: "" });

function setup(answers: Record<string, string | Error>) {
  const changed: string[][] = [];
  const asked: string[] = [];
  const r = new EndpointResolver({
    log,
    onChange: (ids) => changed.push(ids),
    lookup: (host) => {
      asked.push(host);
      const a = answers[host];
      return a instanceof Error ? Promise.reject(a) : a === undefined ? Promise.reject(enoent("ENOTFOUND")) : Promise.resolve(a);
    },
  });
  return { r, changed, asked };
}

describe("EndpointResolver", () => {
  it("a name's first look-up: no endpoint meanwhile, then its address; its peers are told", async () => {
    const { r, changed } = setup({ "peer.test": "192.0.2.7" });
    expect(r.resolve("peer.test", 51820, "n_1")).toBeUndefined();
    expect(r.resolve("peer.test", 51821, "n_2")).toBeUndefined();
    await flush();
    expect(changed).toEqual([["n_1", "n_2"]]);
    expect(r.resolve("peer.test", 51820, "n_1")).toBe("192.0.2.7:51820");
    expect(r.resolve("peer.test", 51821, "n_2")).toBe("192.0.2.7:51821");
  });

  it("a name that never resolved is an error for admission (quarantine); a later answer clears it", async () => {
    const answers: Record<string, string | Error> = {};
    const { r, changed } = setup(answers);
    r.resolve("gone.test", 51820, "n_1");
    await flush();
    expect(r.resolve("gone.test", 51820, "n_1")).toEqual({ error: "gone.test does not resolve (ENOTFOUND); tried again every reconcile" });
    expect(changed).toEqual([["n_1"]]);
    answers["gone.test"] = "fd00::9";
    await r.refresh({ n_1: peer("n_1", "gone.test:51820", 1) });
    expect(r.resolve("gone.test", 51820, "n_1")).toBe("[fd00::9]:51820");
    expect(changed).toEqual([["n_1"], ["n_1"]]);
  });

  it("refresh follows a moved name and keeps the last address when it stops resolving; unchanged answers tell no one", async () => {
    const answers: Record<string, string | Error> = { "peer.test": "192.0.2.7" };
    const { r, changed } = setup(answers);
    const peers = { n_1: peer("n_1", "peer.test:51820", 1) };
    r.resolve("peer.test", 51820, "n_1");
    await flush();
    await r.refresh(peers);
    expect(changed).toHaveLength(1);
    answers["peer.test"] = "192.0.2.8";
    await r.refresh(peers);
    expect(r.resolve("peer.test", 51820, "n_1")).toBe("192.0.2.8:51820");
    expect(changed).toHaveLength(2);
    answers["peer.test"] = enoent("EAI_AGAIN");
    await r.refresh(peers);
    expect(r.resolve("peer.test", 51820, "n_1")).toBe("192.0.2.8:51820");
    expect(changed).toHaveLength(2);
  });

  it("refresh resolves only names in use, and forgets the rest", async () => {
    const { r, asked } = setup({ "a.test": "192.0.2.1", "b.test": "192.0.2.2" });
    r.resolve("a.test", 1, "n_1");
    await flush();
    await r.refresh({ n_2: peer("n_2", "b.test:51820", 2), n_3: peer("n_3", "192.0.2.3:51820", 3), n_4: peer("n_4", "", 4) });
    expect(asked).toEqual(["a.test", "b.test"]);
    expect(r.resolve("a.test", 1, "n_1")).toBeUndefined(); // forgotten: looked up afresh
  });

  it("through admission: an unresolvable name quarantines the peer with the reason, a resolved one is admitted with IP:port", async () => {
    const { r } = setup({ "ok.test": "192.0.2.9" });
    const a = new PeerAdmission();
    const ctx: AdmissionContext = { policy: { allowDefaultRoute: false, minRoutePrefix: { 4: 8, 6: 16 } }, ownPublicKey: "", resolve: r.resolve };
    const [ok, bad] = [peer("n_1", "ok.test:51820", 1), peer("n_2", "nx.test:51820", 2)];
    a.decide("n_1", ok, ctx);
    a.decide("n_2", bad, ctx);
    expect(a.admitted("n_1")?.endpoint).toBe("");
    await flush();
    a.decide("n_1", ok, ctx);
    a.decide("n_2", bad, ctx);
    expect(a.admitted("n_1")?.endpoint).toBe("192.0.2.9:51820");
    expect(a.admitted("n_2")).toBeUndefined();
    expect(a.reasonOf("n_2")).toBe("endpoint: nx.test does not resolve (ENOTFOUND); tried again every reconcile");
  });
});
