import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PlexdError } from "../proto/lib/errors.js";
import { isAllowedInterface, loadPrivConfig, privConfigFrom } from "./config.js";

describe("privConfigFrom", () => {
  it("defaults: plexd0 only, no default routes", () => {
    const c = privConfigFrom({});
    expect(c).toEqual({
      meshInterface: "plexd0",
      socket: "/run/plexd-priv/privhelper.sock",
      chainName: "plexd-mesh",
      tokenFile: "/etc/plexd/bootstrap-token",
      allowedInterfaces: ["plexd0"],
      allowDefaultRoute: false,
      minRoutePrefix: { 4: 8, 6: 16 },
      fullTunnelTable: 51820,
      hooksDir: "/etc/plexd/hooks.d",
      dataDir: "/var/lib/plexd",
      upgradeRoot: "/",
      tailFiles: [],
      ingressRedirects: false,
    });
    expect(Object.isFrozen(c) && Object.isFrozen(c.allowedInterfaces)).toBe(true);
  });

  it("allows ingress redirects only when the file itself runs a bridge with ingress", () => {
    expect(privConfigFrom({ mode: "bridge", bridge: { ingress: { enabled: true } } }).ingressRedirects).toBe(true);
    expect(privConfigFrom({ mode: "bridge", bridge: { ingress: { enabled: false } } }).ingressRedirects).toBe(false);
    expect(privConfigFrom({ mode: "bridge" }).ingressRedirects).toBe(false);
    expect(privConfigFrom({ mode: "node", bridge: { ingress: { enabled: true } } }).ingressRedirects).toBe(false);
    // Only a real boolean counts.
    expect(privConfigFrom({ mode: "bridge", bridge: { ingress: { enabled: "true" } } }).ingressRedirects).toBe(false);
  });

  it("reads only its own keys and ignores the agent's", () => {
    const c = privConfigFrom({ mesh: { interface: "plexd7", allow_default_route: true, peers_hint: 3 }, agent: { anything: 1 }, policy: { chain_name: "my-chain" } });
    expect(c.allowedInterfaces).toEqual(["plexd7"]);
    expect(c.allowDefaultRoute).toBe(true);
    expect(c.chainName).toBe("my-chain");
    expect(privConfigFrom({ mesh: { full_tunnel_table: 200 } }).fullTunnelTable).toBe(200);
    for (const bad of [0, 253, 254, 255, 2 ** 31, 1.5, "51820"]) expect(() => privConfigFrom({ mesh: { full_tunnel_table: bad } })).toThrow(/mesh.full_tunnel_table/);
    expect(isAllowedInterface(c, "plexd7")).toBe(true);
    expect(isAllowedInterface(c, "plexd0")).toBe(false);
  });

  it("lists every bad value: names outside the plexd prefix, relative paths, a default-route flag that is not a boolean", () => {
    let err: unknown;
    try {
      privConfigFrom({ mesh: { interface: "eth0", allow_default_route: "yes" }, privhelper: { socket: "run/x.sock" }, token: { file: "/etc/../x" }, policy: { chain_name: "a b" } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PlexdError);
    expect((err as PlexdError).code).toBe("invalid_argument");
    for (const path of ["mesh.interface", "mesh.allow_default_route", "privhelper.socket", "token.file", "policy.chain_name"]) expect((err as Error).message).toContain(path);
  });

  it("InstallUpgrade's directories come from the file: data_dir and actions.upgrade_root, absolute only", () => {
    expect(privConfigFrom({ data_dir: "/srv/plexd", actions: { upgrade_root: "/tmp/r" } })).toMatchObject({ dataDir: "/srv/plexd", upgradeRoot: "/tmp/r" });
    expect(() => privConfigFrom({ data_dir: "var/lib", actions: { upgrade_root: "../x" } })).toThrow(/data_dir: must be an absolute path\n\s+actions.upgrade_root: must be an absolute path/);
  });

  it("an interface name longer than the kernel allows is refused", () => {
    expect(() => privConfigFrom({ mesh: { interface: "plexd" + "a".repeat(11) } })).toThrow(/mesh\.interface/);
    expect(privConfigFrom({ mesh: { interface: "plexd" + "a".repeat(10) } }).meshInterface).toHaveLength(15);
  });

  it("TailFile serves the Kubernetes audit log once the config names it, never with audit off", () => {
    expect(privConfigFrom({ audit: { sources: ["auditd", "kubernetes"] } }).tailFiles).toEqual(["/var/log/kubernetes/audit/audit.log"]);
    expect(privConfigFrom({ logs: { tail_files: ["/var/log/a.log"] }, audit: { kubernetes_log_path: "/k/audit.log" } }).tailFiles).toEqual(["/var/log/a.log", "/k/audit.log"]);
    expect(privConfigFrom({ audit: { enabled: false, kubernetes_log_path: "/k/audit.log" } }).tailFiles).toEqual([]);
    expect(() => privConfigFrom({ audit: { kubernetes_log_path: "k/audit.log" } })).toThrow(/audit\.kubernetes_log_path: must be an absolute path/);
  });
});

describe("loadPrivConfig", () => {
  it("a missing file means defaults; bad YAML is invalid_argument naming the file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "plexd-privcfg-"));
    try {
      expect((await loadPrivConfig(join(dir, "none.yaml"))).meshInterface).toBe("plexd0");
      await writeFile(join(dir, "c.yaml"), "mesh:\n  interface: plexd3\n  allow_default_route: true\n");
      expect(await loadPrivConfig(join(dir, "c.yaml"))).toMatchObject({ meshInterface: "plexd3", allowDefaultRoute: true });
      await writeFile(join(dir, "bad.yaml"), "mesh: [\n");
      await expect(loadPrivConfig(join(dir, "bad.yaml"))).rejects.toMatchObject({ code: "invalid_argument", message: expect.stringContaining("bad.yaml") });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
