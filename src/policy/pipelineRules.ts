/**
 * The pipeline rules of the checker: which presses may follow which inside one rule's `+`
 * pipeline (one selection press first; a rescoring press right after a scorer; augmenting presses
 * after a selection; one storage press last; `chunked` and `decoding` alone after the selection),
 * and the policy-wide rules of chunked prefill.
 *
 * @module
 */

import type { PlanPress, PlanRule } from "../plan/plan.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import type { ParamValue, PluginSchema } from "../plugins/schema.ts";
import type { CallNode, RuleNode, Span } from "./ast.ts";

/** A press already checked into a pipeline (what later presses are checked against). */
type PipelinePress = {
  name: string;
  role: string;
  when: string;
  params: Record<string, ParamValue>;
};

/** What the pipeline rules need from the policy checker. */
export interface PipelineReport {
  /** Reports an error at `span`. */
  error(span: Span, message: string, hint?: string): void;
  /** Reports a warning at `span`. */
  warn(span: Span, message: string, hint?: string): void;
  /** Checks a call's arguments against its schema (reporting what is wrong). */
  params(call: CallNode, schema: PluginSchema): Record<string, ParamValue> | undefined;
  /** Reports an unknown press or detector name, with suggestions. */
  unknown(call: CallNode, what: "press" | "detector", names: string[]): void;
}

/** `line:column` of a rule. */
export function where(r: RuleNode): string {
  return `${r.span.line}:${r.span.column}`;
}

/** Checks rules' pipelines against the registry's press schemas (see the module doc). */
export class PipelineChecker {
  constructor(private registry: PluginRegistry, private report: PipelineReport) {}

  error(span: Span, message: string, hint?: string) {
    this.report.error(span, message, hint);
  }

  warn(span: Span, message: string, hint?: string) {
    this.report.warn(span, message, hint);
  }

  unknown(call: CallNode, what: "press" | "detector", names: string[]) {
    this.report.unknown(call, what, names);
  }

  params(call: CallNode, schema: PluginSchema): Record<string, ParamValue> | undefined {
    return this.report.params(call, schema);
  }

  pipeline(calls: CallNode[]): PlanPress[] | undefined {
    const out: PlanPress[] = [];
    let ok = true;
    for (const call of calls) {
      const press = this.registry.press(call.name);
      if (!press) {
        if (this.registry.detector(call.name)) {
          this.error(
            call.nameSpan,
            `'${call.name}' is a detector, not a press`,
            "detectors select targets: 'layers lazy -> ...' or 'heads retrieval -> ...'",
          );
        } else this.unknown(call, "press", this.registry.pressNames());
        ok = false;
        continue;
      }
      const params = this.params(call, press);
      const invalid = params && press.checkParams?.(params);
      if (invalid) this.error(call.nameSpan, invalid.error, invalid.hint);
      if (!params || invalid) {
        ok = false;
        continue;
      }
      const previous = out.at(-1);
      if (out.some((p) => p.name === "chunked") || press.name === "chunked") {
        if (!this.chunkedFits(call, out)) ok = false;
      } else if (out.some((p) => p.name === "decoding") || press.name === "decoding") {
        if (!this.decodingFits(call, out, params)) ok = false;
      } else if (press.role === "select" && out.length > 0) {
        const other = out.find((p) => p.role === "select");
        this.error(
          call.nameSpan,
          other
            ? `a pipeline has one selection press, but '${other.name}' and '${call.name}' both select entries`
            : `'${call.name}' selects entries, so it must come first in the pipeline`,
        );
        ok = false;
      } else if (press.role === "rescore") {
        if (!this.rescoreFits(call, out)) ok = false;
      } else if (press.role === "augment") {
        if (!out.some((p) => p.role === "select")) {
          this.error(
            call.nameSpan,
            `'${call.name}' needs a selection press before it`,
            `e.g. window(sink=4, recent=251) + ${call.name}`,
          );
          ok = false;
        } else if (out.some((p) => p.name === press.name)) {
          this.error(call.nameSpan, `'${call.name}' appears twice in the pipeline`);
          ok = false;
        } else if (previous?.role === "store") {
          this.error(call.nameSpan, `'${call.name}' must come before '${previous.name}'`);
          ok = false;
        } else if (out.some((p) => p.name === "full")) {
          this.warn(call.nameSpan, `'${call.name}' after 'full' has nothing to compensate`);
        }
      } else if (press.role === "store" && out.some((p) => p.role === "store")) {
        this.error(call.nameSpan, `a pipeline has one storage press ('${call.name}' repeats it)`);
        ok = false;
      }
      out.push({ name: press.name, role: press.role, when: press.when, params });
    }
    return ok ? out : undefined;
  }

  /**
   * Where a `rescore` press may go: right after the selection press, which must score entries
   * (`PressSchema.score`) with these parameters and have a budget `k`.
   */
  rescoreFits(call: CallNode, before: PipelinePress[]): boolean {
    const scorers = this.registry.pressNames().filter((n) => this.registry.press(n)?.score);
    const example = `e.g. snap(k=25%) + ${call.name}`;
    const select = before[0];
    if (before.length !== 1 || select.role !== "select") {
      this.error(
        call.nameSpan,
        before.some((p) => p.role === "rescore")
          ? `a pipeline has one rescoring press ('${call.name}' follows another)`
          : `'${call.name}' goes right after the selection press whose scores it uses`,
        example,
      );
      return false;
    }
    const schema = this.registry.press(select.name)!;
    const budget = schema.params.find((p) => p.name === "k" && p.type.kind === "budget");
    if (!schema.score || !budget) {
      this.error(
        call.nameSpan,
        `'${select.name}' gives no score per entry for '${call.name}' to use`,
        `scoring presses: ${scorers.join(", ")}`,
      );
      return false;
    }
    const why = schema.scoreUnavailable?.(select.params);
    if (why) {
      this.error(call.nameSpan, `'${call.name}' cannot use '${select.name}' here: ${why}`);
      return false;
    }
    return true;
  }

  /**
   * The placement `chunked` and `decoding` share: `name` comes right after the selection press,
   * alone with it, and nothing follows it. Reports what is wrong at `call` and returns
   * undefined, else returns the selection press.
   */
  lastAfterSelect(
    call: CallNode,
    before: PipelinePress[],
    name: "chunked" | "decoding",
    example: string,
  ): PipelinePress | undefined {
    const fail = (message: string, hint?: string) => {
      this.error(call.nameSpan, message, hint);
      return undefined;
    };
    if (before.some((p) => p.name === name)) {
      return fail(
        `nothing may follow '${name}' ('${call.name}' does): it is the pipeline's last press`,
      );
    }
    const select = before.find((p) => p.role === "select");
    if (!select) return fail(`'${name}' needs a selection press before it`, `e.g. ${example}`);
    if (before.length > 1) {
      return fail(
        `'${name}' goes right after the selection press, alone with it (not with '${
          before.at(-1)!.name
        }')`,
      );
    }
    const needs = this.registry.press(select.name)?.needs;
    if (needs?.queryStatistics || needs?.reconstruction) {
      return fail(
        `'${select.name}' ${
          needs.queryStatistics
            ? "models the queries of the whole prompt, recorded during one prefill"
            : "scores by feeding the whole context again after prefill"
        }: it cannot be re-applied by '${name}' yet`,
      );
    }
    return select;
  }

  /** Where `chunked` may go (`src/plugins/chunkedPress.ts`): right after a press it can re-run. */
  chunkedFits(call: CallNode, before: PipelinePress[]): boolean {
    const select = this.lastAfterSelect(call, before, "chunked", "snap(k=1024) + chunked(size=4k)");
    if (!select || call.name !== "chunked") return select !== undefined;
    if (select.when === "bounded" || ["full", "pyramid", "adakv"].includes(select.name)) {
      this.error(
        call.nameSpan,
        select.name === "full"
          ? "'full' keeps everything: there is nothing to compress between chunks"
          : `'${select.name}' cannot run chunk by chunk yet (it needs the whole prompt at once)`,
        "chunked prefill works with snap, knorm and random",
      );
      return false;
    }
    return true;
  }

  /**
   * A chunked policy's rules share one chunk size; its other rules keep `full`; no `lazy`
   * detector (it reads the whole prompt's last queries).
   */
  chunkedPolicy(rules: [RuleNode, PlanRule][]) {
    const chunkedAt = (rule: PlanRule) => rule.pipeline.findIndex((p) => p.name === "chunked");
    const first = rules.find(([, rule]) => chunkedAt(rule) >= 0);
    if (!first) return;
    const size = first[1].pipeline[chunkedAt(first[1])].params.size;
    for (const [node, rule] of rules) {
      const at = chunkedAt(rule);
      if (at >= 0 && rule.pipeline[at].params.size !== size) {
        this.error(
          node.pipeline[at].nameSpan,
          `every chunked rule uses one chunk size: ${size} at ${where(first[0])}, ` +
            `${rule.pipeline[at].params.size} here`,
        );
      }
      if (at < 0 && !(rule.pipeline.length === 1 && rule.pipeline[0].name === "full")) {
        this.error(
          node.pipeline[0].nameSpan,
          `in a chunked policy every rule is chunked or keeps 'full' ('${rule.pipeline[0].name}' ` +
            "would need the whole prompt cached)",
          `keep 'full', or use snap, knorm or random + chunked(size=${size})`,
        );
      }
      for (const s of [node.target.layers, node.target.heads]) {
        if (s?.kind === "detector" && s.call.name === "lazy") {
          this.error(
            s.call.nameSpan,
            "'lazy' reads the whole prompt's last queries: it cannot select layers in a chunked policy",
          );
        }
      }
    }
  }

  /**
   * Where `decoding` may go (`src/plugins/decodingPress.ts`): after a press that acts once, alone
   * with it; `every=N` needs a press that scores entries. Also refuses other presses after it.
   */
  decodingFits(
    call: CallNode,
    before: PipelinePress[],
    params: Record<string, ParamValue>,
  ): boolean {
    const select = this.lastAfterSelect(
      call,
      before,
      "decoding",
      "snap(k=1024) + decoding(every=512)",
    );
    if (!select || call.name !== "decoding") return select !== undefined;
    if (select.when === "bounded") {
      this.error(
        call.nameSpan,
        `'${select.name}' already keeps the cache bounded while decoding`,
        "decoding goes with presses that act once: snap, knorm, random, pyramid, full",
      );
      return false;
    }
    if (params.every !== null && ["full", "adakv", "pyramid"].includes(select.name)) {
      this.error(
        call.nameSpan,
        select.name === "full"
          ? "decoding(every=...) re-applies a scoring press; 'full' keeps everything"
          : `decoding(every=...) with '${select.name}' is not supported yet (its budgets depend ` +
            "on the whole prompt's layout)",
        "use decoding(recent=R) to bound the generated tokens",
      );
      return false;
    }
    return true;
  }
}
