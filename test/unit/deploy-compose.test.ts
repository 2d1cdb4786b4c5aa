// deploy/docker-compose.yml and the Dockerfile it builds: `docker-compose config` (Debian's
// docker-compose, no engine needed) validates the file, and the node configs it mounts pass
// plexd's own check. Docs: docs/install-containers.md.
import { spawnSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { validate as validateDockerfile } from "dockerfile-utils";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { deployDir, plexdConfigProblems, repoRoot, requireTool, withTempDir } from "./deploy-lib.js";

const composeFile = join(deployDir, "docker-compose.yml");

interface Service {
  user?: string;
  cap_add?: string[];
  cap_drop?: string[];
  network_mode?: string;
  read_only?: boolean;
  volumes?: string[];
  environment?: Record<string, string>;
  command?: string[];
}

/** `docker-compose config` of a compose file: the resolved document, or the tool's complaint. */
function composeConfig(file: string): { ok: boolean; out: string } {
  const bin = requireTool("docker-compose", "docker-compose");
  // No variables from the caller's environment: the file's defaults are what is checked.
  const r = spawnSync(bin, ["--file", file, "config"], { encoding: "utf8", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
  return { ok: r.status === 0, out: r.status === 0 ? r.stdout : r.stderr };
}

describe("deploy/docker-compose.yml", () => {
  const resolved = composeConfig(composeFile);

  it("is valid for docker-compose config", () => {
    expect(resolved.out).not.toBe("");
    expect(resolved.ok, resolved.out).toBe(true);
  });

  it("a broken copy is refused (the check can fail)", () => {
    withTempDir((dir) => {
      cpSync(join(deployDir, "compose"), join(dir, "compose"), { recursive: true });
      const text = readFileSync(composeFile, "utf8");
      const mutations = [
        text.replace("cap_drop: [ALL]", "cap_dorp: [ALL]"),
        text.replace("network_mode: service:node1-privhelper", "network_mode: [service, node1-privhelper]"),
        text.replace("condition: service_healthy", "condition: when_healthy"),
      ];
      for (const [i, m] of mutations.entries()) {
        expect(m, `mutation ${i} applies`).not.toBe(text);
        const f = join(dir, `docker-compose-${i}.yml`);
        writeFileSync(f, m);
        expect(composeConfig(f).ok, `mutation ${i} accepted`).toBe(false);
      }
      // The unmutated copy in the same place passes: the failures above are the mutations'.
      copyFileSync(composeFile, join(dir, "docker-compose.yml"));
      expect(composeConfig(join(dir, "docker-compose.yml")).ok).toBe(true);
    });
  });

  const services = (parse(resolved.out) as { services: Record<string, Service> }).services;

  it("runs mockcp and two nodes of an agent and a privhelper each", () => {
    expect(Object.keys(services).sort()).toEqual(["mockcp", "node1-agent", "node1-privhelper", "node2-agent", "node2-privhelper"]);
  });

  for (const n of [1, 2]) {
    it(`node ${n}: the agent is unprivileged and shares privhelper's network and socket`, () => {
      const agent = services[`node${n}-agent`];
      const priv = services[`node${n}-privhelper`];
      expect(agent?.user).toBe("10001:10001");
      expect(agent?.cap_drop).toEqual(["ALL"]);
      expect(agent?.cap_add).toBeUndefined();
      expect(agent?.read_only).toBe(true);
      expect(agent?.network_mode).toBe(`service:node${n}-privhelper`);
      expect(priv?.user).toBe("0:10001");
      expect(priv?.cap_drop).toEqual(["ALL"]);
      expect([...(priv?.cap_add ?? [])].sort()).toEqual(["NET_ADMIN", "NET_RAW"]);
      expect(priv?.read_only).toBe(true);
      const socketVolume = `node${n}-priv:/run/plexd-priv:rw`;
      expect(agent?.volumes).toContain(socketVolume);
      expect(priv?.volumes).toContain(socketVolume);
      // The token the agent registers with is one mockcp was started with.
      const token = agent?.environment?.PLEXD_BOOTSTRAP_TOKEN;
      expect(token).toBeTruthy();
      expect(services.mockcp?.command).toContain(token);
    });

    it(`node ${n}: its mounted config passes plexd's configuration check`, () => {
      const text = readFileSync(join(deployDir, "compose", `node-${n}.yaml`), "utf8");
      expect(plexdConfigProblems(text, services[`node${n}-agent`]?.environment ?? {})).toEqual([]);
      expect(parse(text)).toMatchObject({ registration: { hostname: `node-${n}` }, api: "https://mockcp:8443" });
    });
  }

  it("a broken node config is caught by the same check", () => {
    const text = readFileSync(join(deployDir, "compose", "node-1.yaml"), "utf8");
    expect(plexdConfigProblems(text.replace("api: https://mockcp:8443", "api: http://mockcp:8443")).join("\n")).toMatch(/api: must use https/);
  });
});

describe("deploy/container/Dockerfile", () => {
  const text = readFileSync(join(deployDir, "container", "Dockerfile"), "utf8");
  const stages = [...text.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/gim)].map((m) => ({ image: m[1], name: m[2] }));

  it("builds in one stage and runs from another, both on the Node 20 Debian 12 image", () => {
    expect(stages.map((s) => s.name)).toEqual(["build", "runtime"]);
    expect(text).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    expect(stages.every((s) => s.image === "${NODE_IMAGE}")).toBe(true);
    expect(text).toMatch(/COPY --from=build \/out\/ \//);
  });

  it("installs what privhelper runs and ends as the unprivileged user", () => {
    const runtime = text.slice(text.indexOf("AS runtime"));
    for (const p of ["wireguard-tools", "wireguard-go", "nftables", "iproute2", "tini"]) expect(runtime).toContain(` ${p}`);
    const users = [...runtime.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]);
    expect(users.at(-1)).toBe("plexd");
    expect(runtime).toMatch(/useradd --system --uid 10001 --gid plexd/);
  });

  // dockerfile-utils: the Dockerfile parser and linter of the Docker language server.
  it("dockerfile-utils finds nothing to complain about", () => {
    expect(validateDockerfile(text).map((d) => `${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
    // ENTRYPOINT/CMD in exec form: tini is PID 1 and signals reach plexd directly.
    for (const m of text.matchAll(/^(?:ENTRYPOINT|CMD)\s+(.*)$/gm)) expect(JSON.parse(m[1] ?? "")).toBeInstanceOf(Array);
  });

  it("every RUN is valid shell (sh -n)", () => {
    // Logical lines as Docker sees them: comment lines dropped, continuations joined.
    const runs = text.replace(/^\s*#.*\n/gm, "").replace(/\\\n/g, " ").split("\n").filter((l) => l.startsWith("RUN "));
    expect(runs.length).toBeGreaterThan(3);
    for (const r of runs) {
      const res = spawnSync("/bin/sh", ["-n", "-c", r.slice(4)], { encoding: "utf8" });
      expect(res.status, `${r.slice(0, 80)}: ${res.stderr}`).toBe(0);
    }
    expect(spawnSync("/bin/sh", ["-n", "-c", "if true; then echo; fi fi"]).status).not.toBe(0);
  });

  it("a broken copy is refused by the same lint", () => {
    for (const broken of [text.replace("\nUSER plexd", "\nUSR plexd"), text.replace("COPY --from=build /out/ /", "COPY --from=build")]) {
      expect(broken).not.toBe(text);
      expect(validateDockerfile(broken).length).toBeGreaterThan(0);
    }
  });

  it("links executables the build makes, and leaves the demo and benchmarks out", () => {
    const scripts = readdirSync(join(repoRoot, "scripts")).filter((f) => f.endsWith(".mjs")).map((f) => readFileSync(join(repoRoot, "scripts", f), "utf8")).join("\n");
    const linked = /for b in ([a-z -]+); do ln -s "\.\.\/lib\/plexd\/\$b\.js"/.exec(text)?.[1]?.split(" ") ?? [];
    expect(linked).toEqual(["plexd", "plexd-privhelper", "plexd-mockcp"]);
    for (const b of [...linked, "plexd-agent", "plexd-cli"]) expect(scripts).toContain(`"${b}"`);
    expect(text).toContain('rm -f "$lib"/plexd-demo.js* "$lib"/plexd-bench.js*');
    expect(existsSync(join(deployDir, "container", "Dockerfile.dockerignore"))).toBe(true);
  });
});
