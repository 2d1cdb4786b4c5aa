// `npm run docs`: writes every generated page (scripts/docs/pages.ts) into docs/.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderAll } from "./pages.js";

const root = process.cwd();
for (const [path, text] of renderAll(root)) {
  writeFileSync(join(root, path), text);
  console.log(`wrote ${path}`);
}
