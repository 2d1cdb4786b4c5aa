// Every generated documentation page: its path and how to render it. `npm run docs` writes them
// (scripts/docs/main.ts); test/unit/generated-docs.test.ts fails while any is stale.
import type { NodeApiBackend } from "../../agent/nodeapi/backend.js";
import { routes } from "../../agent/nodeapi/rest.js";
import { buildOps } from "../../agent/nodeapi/services.js";
import { renderConfigReference } from "./config-reference.js";
import { type ProtoFile, buildImage, renderProtoPage } from "./proto-reference.js";

export interface GeneratedPage {
  readonly path: string;
  readonly render: (image: () => ProtoFile[]) => string;
}

const accessText: Record<string, string> = {
  reader: "Access: reader (anyone who can open the socket: root, user or group `plexd`; over TCP the bearer token).",
  secrets: "Access: secrets (root or user `plexd` on the socket; over TCP only the secrets token).",
  admin: "Access: admin (root or user `plexd`, unix socket only).",
};

/** REST route of an RPC as an operator types it: `GET /v1/state/data/{key}`. */
function restOf(rpc: string): string[] {
  return routes
    .filter((r) => r.rpc === rpc)
    .map((r) => `REST: \`${r.verb} ${r.pattern.source.replace(/^\^/, "").replace(/\$$/, "").replaceAll("\\/", "/").replaceAll("([^/]+)", "{key}")}\``);
}

function nodeApiNotes(service: string, method: string): string[] {
  // The handler table alone is read (which RPCs exist, their access class); no backend is called.
  const ops = buildOps({ backend: {} as NodeApiBackend, state: undefined });
  const op = ops.find((o) => o.method.parent.name === service && o.method.name === method);
  if (op === undefined) return ["Not served by this version of the agent (answers `UNIMPLEMENTED`)."];
  return [accessText[op.access] ?? `Access: ${op.access}`, ...restOf(`plexd.node.v1.${service}/${method}`)];
}

const nodeIntro = `The agent's local API, for the CLI, \`plexd top\` and local automation. It is served on the
unix socket \`node_api.socket\` (default \`/run/plexd/api.sock\`, mode 0660, group \`plexd\`) as gRPC,
Connect and plain REST/JSON on the same socket, plus \`grpc.health.v1\` and server reflection; with
\`node_api.http.enabled\` also on a TCP listener (REST, bearer token, no admin calls). Access classes
and the reload/health behaviour are described in [operations.md](operations.md); the JSON of
\`GetStatus\` in [status-json.md](status-json.md).

\`\`\`
curl --unix-socket /run/plexd/api.sock http://localhost/v1/agent/status
grpcurl -plaintext -unix /run/plexd/api.sock plexd.node.v1.AgentService/GetStatus
\`\`\``;

const privIntro = `The contract between the agent (user \`plexd\`, no capabilities) and privhelper (root), for
auditors: this is everything the unprivileged agent can ask of root. privhelper listens on
\`privhelper.socket\` (default \`/run/plexd-priv/privhelper.sock\`, directory \`root:plexd 0750\`,
socket \`root:plexd 0660\`) and serves a call only when the connection's SO_PEERCRED is root or the
agent's user; everyone else gets \`PERMISSION_DENIED\`, logged with uid and pid. Every field is
validated by allow-list and re-serialised by privhelper; no command or rule text crosses the socket.
See [architecture.md](architecture.md#privhelper).`;

export const generatedPages: readonly GeneratedPage[] = [
  { path: "docs/config-reference.md", render: () => renderConfigReference() },
  { path: "docs/node-api.md", render: (image) => renderProtoPage(image(), "plexd/node/v1/node.proto", { title: "Node API reference", intro: nodeIntro, methodNotes: nodeApiNotes }) },
  { path: "docs/privhelper-api.md", render: (image) => renderProtoPage(image(), "plexd/priv/v1/priv.proto", { title: "privhelper API reference", intro: privIntro }) },
];

/** Renders every page; the buf image is built once, on first use. */
export function renderAll(root: string): Map<string, string> {
  let cached: ProtoFile[] | undefined;
  const image = (): ProtoFile[] => (cached ??= buildImage(root));
  return new Map(generatedPages.map((p) => [p.path, p.render(image)]));
}
