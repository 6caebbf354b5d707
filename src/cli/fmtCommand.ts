/**
 * `deno task fmt P.kvp... [--check]`: rewrites policies in canonical form; `--check` only
 * reports (exit 1 when a policy is not canonical). Inline policies are printed formatted. Files
 * are replaced atomically; canonical text is UTF-8 without a byte order mark, with LF line ends.
 *
 * @module
 */

import { renderDiagnostics } from "../policy/diagnostics.ts";
import { formatPolicy } from "../policy/format.ts";
import { parsePolicy } from "../policy/parse.ts";
import { writeFileAtomicSync } from "../atomicWrite.ts";
import { parseFlags } from "./args.ts";
import { UserError } from "./errors.ts";
import { readPolicySource } from "./policySource.ts";

/** Usage text of `fmt`. */
export const FMT_USAGE = `usage: deno task fmt POLICY... [--check]
  rewrites each .kvp file in canonical form (inline policies are printed)
  --check  change nothing; exit 1 if any policy is not canonical`;

/**
 * Replaces a policy file with its canonical text, atomically ({@link writeFileAtomicSync}): on a
 * full disk or a read-only folder the file keeps its old text and the error says so. A link is
 * kept and the file it names is rewritten; the file's permission bits are kept.
 */
function rewrite(file: string, text: string): void {
  let target = file;
  try {
    target = Deno.realPathSync(file);
    writeFileAtomicSync(target, text, { mode: (Deno.statSync(target).mode ?? 0o644) & 0o7777 });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new UserError(
      `cannot rewrite ${file}${target !== file ? ` (${target})` : ""}: ${why}; it is unchanged`,
    );
  }
}

/** Runs `fmt`; returns the exit code. */
export function fmtCommand(args: string[]): number {
  const { values, positionals } = parseFlags("fmt", args, {
    check: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(FMT_USAGE);
    return 0;
  }
  if (positionals.length === 0) throw new UserError(`fmt: no policy given\n${FMT_USAGE}`);
  let status = 0;
  for (const arg of positionals) {
    const source = readPolicySource(arg);
    const parsed = parsePolicy(source.text, source.file);
    if (parsed.diagnostics.length) {
      console.error(renderDiagnostics(source.file, source.text, parsed.diagnostics));
      console.error(`${source.file}: not formatted (syntax errors)`);
      status = 1;
      continue;
    }
    const formatted = formatPolicy(parsed.ast);
    const canonical = formatted === source.text && !source.bom;
    if (values.check) {
      if (!canonical) {
        console.error(`${source.file}: not canonical (run: deno task fmt ${arg})`);
        status = 1;
      }
    } else if (source.inline) {
      console.log(formatted.trimEnd());
    } else if (!canonical) {
      rewrite(source.file, formatted);
      console.log(`formatted ${source.file}`);
    }
  }
  return status;
}
