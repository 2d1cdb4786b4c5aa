// deploy/kubernetes/: every object is checked offline against the Kubernetes API schemas
// bundled with kubernetes-models (the generated OpenAPI schemas of the API types, compiled to
// validators), the CRDs' openAPIV3Schema against Kubernetes' structural-schema rules, and the
// samples against those schemas with an independent validator (python3-jsonschema), strict
// about unknown fields as `kubectl apply` is. Docs: docs/kubernetes.md.
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { schemaViolations } from "../support/json-schema.js";
import { deployDir, plexdConfigProblems, readYamlDocuments, requireTool, withTempDirAsync } from "./deploy-lib.js";

const dir = join(deployDir, "kubernetes");
type Obj = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const manifestFiles = readdirSync(dir).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml").sort();
const objects: { file: string; obj: Obj }[] = manifestFiles.flatMap((file) => readYamlDocuments(join(dir, file)).map((obj) => ({ file, obj: obj as Obj })));
const find = (kind: string, name: string): Obj => {
  const o = objects.find((x) => x.obj.kind === kind && x.obj.metadata.name === name)?.obj;
  if (o === undefined) throw new Error(`no ${kind} ${name} in deploy/kubernetes`);
  return o;
};

/** kubernetes-models' validator for an object's apiVersion and kind; throws listing the violations. */
async function validateBuiltin(obj: unknown): Promise<void> {
  if (!isObj(obj) || typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") throw new Error("not a Kubernetes object (apiVersion, kind)");
  const path = `kubernetes-models/${obj.apiVersion}/${obj.kind}`;
  let mod: Record<string, new (data: unknown) => { validate(): void }>;
  try {
    mod = (await import(path)) as typeof mod;
  } catch {
    throw new Error(`unknown API type ${obj.apiVersion} ${obj.kind}`);
  }
  const Model = mod[obj.kind];
  if (Model === undefined) throw new Error(`unknown API type ${obj.apiVersion} ${obj.kind}`);
  new Model(obj).validate();
}

/**
 * Kubernetes' structural-schema rules that a generic JSON Schema validator does not know: every
 * node has a type unless it preserves unknown fields; objects use properties or
 * additionalProperties, not both; a default must satisfy its own node's type.
 */
function structuralProblems(schema: unknown, path = "openAPIV3Schema"): string[] {
  if (!isObj(schema)) return [`${path}: not a schema object`];
  const out: string[] = [];
  const free = schema["x-kubernetes-preserve-unknown-fields"] === true || schema["x-kubernetes-int-or-string"] === true;
  if (typeof schema.type !== "string" && !free) out.push(`${path}: type is required`);
  if (schema.properties !== undefined && schema.additionalProperties !== undefined) out.push(`${path}: properties and additionalProperties are mutually exclusive`);
  if (schema.type === "array" && schema.items === undefined) out.push(`${path}: an array needs items`);
  const d = schema.default;
  if (d !== undefined && schema.type !== undefined && typeof d !== ({ string: "string", boolean: "boolean", integer: "number", number: "number" } as Record<string, string>)[schema.type as string]) {
    out.push(`${path}: default ${JSON.stringify(d)} is not of type ${String(schema.type)}`);
  }
  for (const k of ["$ref", "anyOf", "oneOf", "allOf", "not", "definitions", "dependencies", "patternProperties", "additionalItems", "uniqueItems"]) {
    if (k in schema && !(["allOf", "anyOf", "oneOf", "not"].includes(k) && path !== "openAPIV3Schema")) out.push(`${path}: ${k} is not allowed in a CRD schema`);
  }
  if (isObj(schema.properties)) for (const [k, v] of Object.entries(schema.properties)) out.push(...structuralProblems(v, `${path}.properties.${k}`));
  if (schema.items !== undefined) out.push(...structuralProblems(schema.items, `${path}.items`));
  if (isObj(schema.additionalProperties)) out.push(...structuralProblems(schema.additionalProperties, `${path}.additionalProperties`));
  return out;
}

/** What a strict `kubectl apply` does with unknown fields (fieldValidation=Strict): refuse them. */
function strict(schema: unknown): unknown {
  if (!isObj(schema)) return schema;
  const out: Record<string, unknown> = { ...schema };
  if (isObj(schema.properties)) {
    out.properties = Object.fromEntries(Object.entries(schema.properties).map(([k, v]) => [k, strict(v)]));
    if (schema["x-kubernetes-preserve-unknown-fields"] !== true) out.additionalProperties = false;
  }
  if (schema.items !== undefined) out.items = strict(schema.items);
  return out;
}

function crdSchemaFor(apiVersion: string, kind: string): unknown {
  const [group, version] = apiVersion.split("/");
  const crd = objects.find((o) => o.obj.kind === "CustomResourceDefinition" && (o.obj.spec as { group: string; names: { kind: string } }).group === group && (o.obj.spec as { names: { kind: string } }).names.kind === kind)?.obj;
  if (crd === undefined) throw new Error(`no CRD for ${apiVersion} ${kind}`);
  const v = (crd.spec as { versions: { name: string; schema: { openAPIV3Schema: unknown } }[] }).versions.find((x) => x.name === version);
  if (v === undefined) throw new Error(`CRD for ${kind} has no version ${version}`);
  return v.schema.openAPIV3Schema;
}

/** Violations of a custom resource against its CRD (strictly), by python3-jsonschema. */
async function customResourceViolations(obj: Obj): Promise<string[]> {
  requireTool("python3", "python3-jsonschema");
  const schema = strict(crdSchemaFor(obj.apiVersion, obj.kind));
  return withTempDirAsync(async (tmp) => {
    const file = join(tmp, "schema.json");
    writeFileSync(file, JSON.stringify(schema));
    return schemaViolations(file, JSON.stringify(obj));
  });
}

const mutate = <T>(v: T, fn: (copy: T) => void): T => {
  const copy = structuredClone(v);
  fn(copy);
  return copy;
};

describe("deploy/kubernetes: every manifest against the Kubernetes API schemas", () => {
  it("holds the namespace, both CRDs, RBAC, config, bootstrap Secret and DaemonSet", () => {
    expect(objects.map((o) => `${o.obj.kind}/${o.obj.metadata.name}`)).toEqual(
      expect.arrayContaining([
        "Namespace/plexd-system",
        "CustomResourceDefinition/plexdnodestates.plexd.plexsphere.com",
        "CustomResourceDefinition/plexdhooks.plexd.plexsphere.com",
        "ServiceAccount/plexd",
        "ServiceAccount/plexd-hook-runner",
        "ClusterRole/plexd",
        "ClusterRoleBinding/plexd",
        "Role/plexd",
        "RoleBinding/plexd",
        "ClusterRole/plexd-state-reader",
        "ClusterRole/plexd-state-reporter",
        "ClusterRole/plexd-secrets-reader",
        "ConfigMap/plexd-config",
        "Secret/plexd-bootstrap",
        "DaemonSet/plexd",
      ]),
    );
  });

  for (const { file, obj } of objects) {
    it(`${file}: ${obj.kind} ${obj.metadata.name} is a valid ${obj.apiVersion} ${obj.kind}`, async () => {
      await validateBuiltin(obj);
      if (obj.kind !== "Namespace" && obj.kind !== "CustomResourceDefinition" && !obj.kind.startsWith("Cluster")) expect(obj.metadata.namespace).toBe("plexd-system");
    });
  }

  it("a broken copy is refused (the check can fail)", async () => {
    const ds = find("DaemonSet", "plexd");
    const broken: [unknown, RegExp][] = [
      [mutate(ds, (d) => ((d.spec as { template: { spec: { containers: { image: unknown }[] } } }).template.spec.containers[0]!.image = 42)), /containers\/0\/image must be string/],
      [mutate(ds, (d) => delete (d.spec as { selector?: unknown }).selector), /spec must have required property selector/],
      [mutate(ds, (d) => ((d.spec as { updateStrategy: { type: unknown } }).updateStrategy.type = ["RollingUpdate"])), /updateStrategy\/type must be string/],
      [mutate(find("Role", "plexd"), (r) => ((r.rules as { verbs: unknown }[])[0]!.verbs = "get")), /rules\/0\/verbs must be array/],
      [{ ...ds, kind: "DaemonSett" }, /unknown API type apps\/v1 DaemonSett/],
    ];
    for (const [i, [b, why]] of broken.entries()) await expect(validateBuiltin(b), `mutation ${i}`).rejects.toThrow(why);
  });

  it("kustomization.yaml lists every manifest", () => {
    const k = readYamlDocuments(join(dir, "kustomization.yaml"))[0] as { resources: string[] };
    expect([...k.resources].sort()).toEqual(manifestFiles);
  });
});

describe("deploy/kubernetes: the CRDs", () => {
  const crds = objects.filter((o) => o.obj.kind === "CustomResourceDefinition").map((o) => o.obj);

  it("are structural schemas", () => {
    for (const crd of crds) {
      for (const v of (crd.spec as { versions: { schema: { openAPIV3Schema: unknown } }[] }).versions) expect(structuralProblems(v.schema.openAPIV3Schema), crd.metadata.name).toEqual([]);
    }
  });

  it("a CRD schema with an untyped field is refused", () => {
    const schema = crdSchemaFor("plexd.plexsphere.com/v1alpha1", "PlexdNodeState");
    const broken = mutate(schema as { properties: { spec: { properties: { nodeId: { type?: string } } } } }, (s) => delete s.properties.spec.properties.nodeId.type);
    expect(structuralProblems(broken)).toEqual(["openAPIV3Schema.properties.spec.properties.nodeId: type is required"]);
  });

  it("PlexdNodeState: group, version, names, status subresource and printer columns", () => {
    const spec = find("CustomResourceDefinition", "plexdnodestates.plexd.plexsphere.com").spec as Record<string, unknown>;
    expect(spec).toMatchObject({ group: "plexd.plexsphere.com", scope: "Namespaced", names: { plural: "plexdnodestates", kind: "PlexdNodeState", shortNames: ["pns"] } });
    const [v] = spec.versions as unknown as { name: string; subresources: unknown; additionalPrinterColumns: { name: string; jsonPath: string }[] }[];
    expect(v?.name).toBe("v1alpha1");
    expect(v?.subresources).toEqual({ status: {} });
    expect(v?.additionalPrinterColumns.map((c) => c.name)).toEqual(["Node ID", "Mesh IP", "Age"]);
  });

  it("PlexdHook: names, required jobTemplate, timeout and privileged defaults", () => {
    const spec = find("CustomResourceDefinition", "plexdhooks.plexd.plexsphere.com").spec as Record<string, unknown>;
    expect(spec).toMatchObject({ group: "plexd.plexsphere.com", scope: "Namespaced", names: { plural: "plexdhooks", kind: "PlexdHook", shortNames: ["ph"] } });
    const hookSpec = (crdSchemaFor("plexd.plexsphere.com/v1alpha1", "PlexdHook") as { properties: { spec: Record<string, never> } }).properties.spec;
    expect(hookSpec).toMatchObject({ required: ["jobTemplate"], properties: { timeout: { default: "30s" }, privileged: { default: false } } });
  });
});

describe("deploy/kubernetes/samples against the CRDs", () => {
  const samplesDir = join(dir, "samples");
  const samples = readdirSync(samplesDir)
    .filter((f) => f.endsWith(".yaml"))
    .flatMap((f) => readYamlDocuments(join(samplesDir, f)).map((obj) => ({ file: f, obj: obj as Obj })));

  it("there is a sample of each CRD", () => {
    expect(samples.map((s) => s.obj.kind).sort()).toEqual(["PlexdHook", "PlexdNodeState"]);
  });

  for (const { file, obj } of samples) {
    it(`${file} is valid`, async () => {
      expect(await customResourceViolations(obj)).toEqual([]);
      expect(obj.metadata.namespace).toBe("plexd-system");
    });
  }

  it("a PlexdNodeState is named after its node id and labelled with it", () => {
    const s = samples.find((x) => x.obj.kind === "PlexdNodeState")!.obj as Obj & { spec: { nodeId: string }; metadata: { labels: Record<string, string> } };
    expect(s.metadata.name).toBe(`node-${s.spec.nodeId.toLowerCase().replaceAll("_", "-")}`);
    expect(s.metadata.labels["plexd.plexsphere.com/node-id"]).toBe(s.spec.nodeId);
  });

  it("broken samples are refused, each naming the field", async () => {
    const state = samples.find((x) => x.obj.kind === "PlexdNodeState")!.obj;
    const hook = samples.find((x) => x.obj.kind === "PlexdHook")!.obj;
    const cases: [Obj, RegExp][] = [
      [mutate(state, (s) => delete (s.spec as { nodeId?: string }).nodeId), /nodeId/],
      [mutate(state, (s) => ((s.spec as { data: { version: number }[] }).data[0]!.version = 0)), /data\/0\/version/],
      [mutate(state, (s) => ((s.spec as { secretRefs: Record<string, unknown>[] }).secretRefs[0]!.secretname = "x")), /secretname/],
      [mutate(state, (s) => ((s.status as { report: { key?: unknown }[] }).report[0]!.key = 7)), /report\/0\/key/],
      [mutate(hook, (h) => ((h.spec as { parameters: { type: string }[] }).parameters[0]!.type = "float")), /parameters\/0\/type/],
      [mutate(hook, (h) => ((h.spec as { timeout: string }).timeout = "2 minutes")), /timeout/],
      [mutate(hook, (h) => delete (h.spec as { jobTemplate?: unknown }).jobTemplate), /jobTemplate/],
    ];
    for (const [i, [obj, field]] of cases.entries()) expect((await customResourceViolations(obj)).join("\n"), `case ${i}`).toMatch(field);
  });
});

describe("deploy/kubernetes: the DaemonSet", () => {
  interface Container {
    name: string;
    command: string[];
    securityContext: { runAsUser: number; runAsNonRoot?: boolean; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; privileged?: boolean; capabilities: { drop?: string[]; add?: string[] } };
    volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
    env?: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  }
  const ds = find("DaemonSet", "plexd") as Obj & { spec: { template: { spec: Record<string, unknown> & { containers: Container[]; initContainers: Container[]; volumes: ({ name: string } & Record<string, unknown>)[] } } } };
  const pod = ds.spec.template.spec;
  const byName = (n: string): Container => pod.containers.find((c) => c.name === n)!;
  const agent = byName("plexd");
  const priv = byName("privhelper");
  const volume = (n: string) => pod.volumes.find((v) => v.name === n);
  const mountOf = (c: Container, path: string) => c.volumeMounts.find((m) => m.mountPath === path);

  it("runs on every node, on the host network, as service account plexd, without hostPID", () => {
    expect(pod).toMatchObject({ hostNetwork: true, dnsPolicy: "ClusterFirstWithHostNet", serviceAccountName: "plexd", priorityClassName: "system-node-critical", tolerations: [{ operator: "Exists" }] });
    expect(pod.hostPID).toBeUndefined();
    expect(ds.spec).toMatchObject({ updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } } });
    find("ServiceAccount", "plexd");
  });

  it("the agent is non-root, capability-less, on a read-only root file system", () => {
    expect(agent.securityContext).toMatchObject({ runAsUser: 10001, runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
    expect(agent.securityContext.capabilities.add).toBeUndefined();
  });

  it("privhelper is root with NET_ADMIN and NET_RAW only, not privileged", () => {
    expect(priv.securityContext).toMatchObject({ runAsUser: 0, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
    expect([...(priv.securityContext.capabilities.add ?? [])].sort()).toEqual(["NET_ADMIN", "NET_RAW"]);
    for (const c of [...pod.containers, ...pod.initContainers]) expect(c.securityContext.privileged, c.name).not.toBe(true);
  });

  it("the privhelper socket volume is an emptyDir shared by the two containers only", () => {
    expect(volume("privhelper-socket")).toMatchObject({ emptyDir: {} });
    const users = pod.containers.filter((c) => c.volumeMounts.some((m) => m.name === "privhelper-socket")).map((c) => c.name);
    expect(users.sort()).toEqual(["plexd", "privhelper"]);
    for (const c of [agent, priv]) expect(mountOf(c, "/run/plexd-priv")?.name).toBe("privhelper-socket");
  });

  it("every mounted volume exists; config and Secret are the ones shipped", () => {
    for (const c of [...pod.containers, ...pod.initContainers]) for (const m of c.volumeMounts) expect(volume(m.name), `${c.name} mounts ${m.name}`).toBeDefined();
    expect(volume("config")).toMatchObject({ configMap: { name: "plexd-config" } });
    find("ConfigMap", "plexd-config");
    const tokenRef = agent.env?.find((e) => e.name === "PLEXD_BOOTSTRAP_TOKEN")?.valueFrom?.secretKeyRef;
    expect(tokenRef).toEqual({ name: "plexd-bootstrap", key: "token" });
    const secret = find("Secret", "plexd-bootstrap") as Obj & { stringData: Record<string, string> };
    expect(Object.keys(secret.stringData)).toEqual(["token"]);
  });

  it("the ConfigMap's config passes plexd's check, and its paths are on the pod's mounts", () => {
    const text = (find("ConfigMap", "plexd-config") as Obj & { data: { "config.yaml": string } }).data["config.yaml"];
    const env = Object.fromEntries((agent.env ?? []).filter((e) => e.valueFrom === undefined).map((e) => [e.name, ""]));
    expect(plexdConfigProblems(text, env)).toEqual([]);
    const broken = text.replace("api: https://cp.example.com", "api: https://cp.example.com\nmesh:\n  listen_port: 70000");
    expect(plexdConfigProblems(broken).join("\n")).toMatch(/mesh\.listen_port/);
    // Defaults of the keys not set there: data, node API and privhelper sockets.
    expect(mountOf(agent, "/var/lib/plexd")?.readOnly).not.toBe(true);
    expect(mountOf(agent, "/run/plexd")?.readOnly).not.toBe(true);
    expect(mountOf(agent, "/etc/plexd")?.readOnly).toBe(true);
    expect(mountOf(priv, "/etc/plexd")?.readOnly).toBe(true);
  });

  it("probes ask the agent over its node API socket", () => {
    expect(ds.spec.template.spec.containers[0]).toMatchObject({
      livenessProbe: { exec: { command: ["plexd", "status", "-o", "json"] }, initialDelaySeconds: 10, periodSeconds: 30 },
      readinessProbe: { exec: { command: ["plexd", "status", "-o", "json"] }, initialDelaySeconds: 5, periodSeconds: 10 },
    });
  });
});

describe("deploy/kubernetes: RBAC", () => {
  type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
  const rulesOf = (kind: string, name: string) => (find(kind, name) as Obj & { rules: Rule[] }).rules;
  const allowed = (rules: Rule[], resource: string, verb: string) => rules.some((r) => r.resources.includes(resource) && (r.verbs.includes(verb) || r.verbs.includes("*")));
  const agentRules = [...rulesOf("ClusterRole", "plexd"), ...rulesOf("Role", "plexd")];

  it("grants the agent what it reads and writes, and nothing else", () => {
    const needed: [string, string[]][] = [
      ["plexdnodestates", ["get", "list", "watch", "create", "update", "patch", "delete"]],
      ["plexdnodestates/status", ["get", "patch", "update"]],
      ["secrets", ["create", "get", "update", "delete"]],
      ["tokenreviews", ["create"]],
      ["plexdhooks", ["get", "list", "watch"]],
      ["jobs", ["create", "get", "list", "watch", "delete"]],
      ["pods", ["get", "list", "watch"]],
      ["pods/log", ["get", "list", "watch"]],
    ];
    for (const [res, verbs] of needed) for (const v of verbs) expect(allowed(agentRules, res, v), `${v} ${res}`).toBe(true);
    expect(allowed(agentRules, "secrets", "list")).toBe(false);
    expect(allowed(agentRules, "plexdhooks", "create")).toBe(false);
    expect(agentRules.flatMap((r) => r.resources).every((r) => needed.some(([n]) => n === r))).toBe(true);
    expect(agentRules.some((r) => r.verbs.includes("*") || r.resources.includes("*"))).toBe(false);
  });

  it("the bindings give those roles to service account plexd", () => {
    for (const kind of ["ClusterRoleBinding", "RoleBinding"]) {
      expect(find(kind, "plexd")).toMatchObject({ roleRef: { name: "plexd" }, subjects: [{ kind: "ServiceAccount", name: "plexd", namespace: "plexd-system" }] });
    }
  });
});
