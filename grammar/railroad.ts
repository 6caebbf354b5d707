/**
 * Generates `grammar/railroad.html`, the railroad diagram of the policy grammar, from the parser
 * itself (Chevrotain's `createSyntaxDiagramsCode`). The page loads Chevrotain's diagram scripts
 * from `grammar/diagrams/`, which this script copies from the installed chevrotain package.
 *
 * Run: `deno task railroad`. A test checks that the committed HTML is current.
 *
 * @module
 */

import { createSyntaxDiagramsCode } from "chevrotain";
import { policyParser } from "./parser.ts";

/** The railroad HTML for the current grammar. */
export function railroadHtml(): string {
  return createSyntaxDiagramsCode(policyParser.getSerializedGastProductions(), {
    resourceBase: "./diagrams/",
    css: "./diagrams/diagrams.css",
  });
}

/** Copies chevrotain's diagram assets next to the HTML so the page works offline. */
async function copyAssets(target: URL): Promise<void> {
  const pkg = new URL("./", import.meta.resolve("chevrotain"));
  // import.meta.resolve gives .../chevrotain/<version>/lib/src/api.js; the assets are at the root.
  let root = pkg;
  for (let i = 0; i < 4 && !(await exists(new URL("diagrams/diagrams.css", root))); i++) {
    root = new URL("../", root);
  }
  const files = [
    "diagrams.css",
    "vendor/railroad-diagrams.js",
    "src/diagrams_builder.js",
    "src/diagrams_behavior.js",
    "src/main.js",
  ];
  for (const f of files) {
    const from = new URL(`diagrams/${f}`, root);
    const to = new URL(f, target);
    await Deno.mkdir(new URL("./", to), { recursive: true });
    if (await exists(from)) await Deno.copyFile(from, to);
  }
}

async function exists(url: URL): Promise<boolean> {
  try {
    await Deno.stat(url);
    return true;
  } catch {
    return false;
  }
}

if (import.meta.main) {
  const html = new URL("./railroad.html", import.meta.url);
  await Deno.writeTextFile(html, railroadHtml());
  await copyAssets(new URL("./diagrams/", import.meta.url));
  console.log(`wrote ${html.pathname}`);
}
