/**
 * The checkpoint of an evaluation (`DIR/outcomes.jsonl` beside the report): a header line saying
 * which model and suite the answers belong to, then one line per finished sample
 * (`{"key": …, "outcome": …}`, keys from `outcomeKey`), appended as each is done, so that a long
 * run that is interrupted goes on where it stopped (`eval --resume`). Every sample's prompt
 * derives from the suite's seed, its task, cell and index alone, so a run may also resume with a
 * grid of another extent — more lengths, depths, samples or tasks — and only the cells it lacks
 * run; anything else that shapes a prompt (seed, templates, task settings, chat) must match.
 *
 * @module
 */

import { UserError } from "../userError.ts";
import { decodeUtf8, readBoundedFileSync } from "../model/readBounded.ts";
import type { SampleOutcome } from "./results.ts";
import type { EvalSuite } from "./suite.ts";

/** The largest checkpoint read back (a sample's line is a few hundred bytes). */
export const CHECKPOINT_LIMIT = 512 * 1024 * 1024;

/** The header line of a checkpoint for this model and suite. */
export function checkpointHeader(modelPath: string, suite: EvalSuite): string {
  return JSON.stringify({ kvpolicy_eval_checkpoint: 1, model: modelPath, suite });
}

/** The suite fields that only set the grid's extent (cells are keyed, prompts seeded per cell). */
const EXTENT: readonly (keyof EvalSuite)[] = ["samples", "lengths", "depths", "tasks"];

/**
 * Whether a checkpoint with header line `line` holds answers valid for `header`'s run: the same
 * format, model and suite, up to the grid's extent. Key order does not matter.
 */
export function sameRun(line: string, header: string): boolean {
  const strip = (text: string): string | null => {
    try {
      const h = JSON.parse(text);
      if (typeof h !== "object" || h === null || typeof h.suite !== "object" || !h.suite) {
        return null;
      }
      const suite = { ...h.suite };
      for (const k of EXTENT) delete suite[k];
      return canonical({ ...h, suite });
    } catch {
      return null;
    }
  };
  const a = strip(line);
  return a !== null && a === strip(header);
}

/** JSON with every object's keys sorted. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** An open checkpoint: the outcomes it already held, and where new ones go. */
export interface Checkpoint {
  /** Outcomes read back (empty unless resuming). */
  done: Map<string, SampleOutcome>;
  /** Appends one outcome (one line, written at once). */
  append(key: string, outcome: SampleOutcome): void;
}

/**
 * Opens the checkpoint at `path`: with `resume`, reads the outcomes an earlier run of the same
 * model and suite left, whatever the grid's extent ({@link sameRun}; refusing a file of another
 * run, or one that is not a checkpoint), else starts it anew. A last line cut short by an
 * interruption is dropped. The file is rewritten with this run's header and every outcome read,
 * those outside this run's grid included.
 */
export function openCheckpoint(path: string, header: string, resume: boolean): Checkpoint {
  const done = new Map<string, SampleOutcome>();
  let exists = false;
  try {
    const info = Deno.lstatSync(path);
    if (!info.isFile) throw new UserError(`${path} is not a regular file: remove it`);
    exists = true;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (resume && exists) {
    const lines = decodeUtf8(readBoundedFileSync(path, CHECKPOINT_LIMIT, "a checkpoint"), path)
      .split("\n");
    if (!sameRun(lines[0], header)) {
      throw new UserError(
        `--resume: ${path} holds the answers of another model or suite (its first line differs ` +
          "beyond the grid's lengths, depths, samples and tasks); run the same command as before, " +
          "or remove the file to start over",
      );
    }
    for (let i = 1; i < lines.length; i++) {
      if (lines[i] === "") continue;
      try {
        const { key, outcome } = JSON.parse(lines[i]);
        if (typeof key !== "string" || typeof outcome !== "object" || outcome === null) {
          throw new SyntaxError("no key and outcome");
        }
        done.set(key, outcome as SampleOutcome);
      } catch (e) {
        // Only the last line may be cut short (the run was stopped while writing it).
        if (i === lines.length - 1) break;
        throw new UserError(
          `--resume: ${path}:${i + 1}: not a checkpoint line (${(e as Error).message})`,
        );
      }
    }
  }
  // Anew, or rewritten without a line cut short, so that appends start on a line of their own.
  const kept = [...done].map(([key, outcome]) => JSON.stringify({ key, outcome }) + "\n");
  Deno.writeTextFileSync(path, header + "\n" + kept.join(""));
  return {
    done,
    append(key, outcome) {
      Deno.writeTextFileSync(path, JSON.stringify({ key, outcome }) + "\n", { append: true });
    },
  };
}
