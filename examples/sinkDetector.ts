/**
 * A complete third-party detector: `sinky(threshold, sink)` flags the layers whose last prompt
 * query puts more than `threshold` of its attention (averaged over heads) on the first `sink`
 * tokens — the "attention sink" layers of StreamingLLM (Xiao et al., 2023), which a policy may
 * want to treat differently: `layers sinky -> window(sink=4, recent=256); else -> snap(k=1024)`.
 *
 * Use it: `deno task run --allow-plugins --policy 'use "./examples/sinkDetector.ts"; layers sinky -> window(sink=4, recent=64); else -> full'`
 *
 * @module
 */

import type { DetectorInput, DetectorSchema, ParamValue } from "../mod.ts";

/** Mass of `probs` on the first `sink` positions. */
export function sinkMass(probs: ArrayLike<number>, sink: number): number {
  let mass = 0;
  for (let j = 0; j < Math.min(sink, probs.length); j++) mass += probs[j];
  return mass;
}

/** Per layer: is the mean sink mass of the last query above `threshold`? */
export async function classifySinkLayers(
  input: DetectorInput,
  params: Record<string, ParamValue>,
): Promise<boolean[]> {
  const threshold = params.threshold as number;
  const sink = params.sink as number;
  const out: boolean[] = [];
  for (let layer = 0; layer < input.numLayers; layer++) {
    const heads = await input.lastQueryAttention(layer);
    const mean = heads.reduce((s, p) => s + sinkMass(p, sink), 0) / heads.length;
    out.push(mean > threshold);
  }
  return out;
}

/** The `sinky` detector. */
export const sinkDetector: DetectorSchema = {
  kind: "detector",
  name: "sinky",
  target: "layers",
  params: [
    {
      name: "threshold",
      type: { kind: "number", min: 0, max: 1 },
      default: 0.5,
      doc: "flag when the sink mass exceeds this",
    },
    { name: "sink", type: { kind: "int", min: 1 }, default: 4, doc: "initial tokens counted" },
  ],
  doc: "Layers whose last query attends mostly to the first tokens (attention sinks).",
  classify: classifySinkLayers,
};

/** What kvpolicy registers from this module. */
export const plugins: DetectorSchema[] = [sinkDetector];
