/**
 * SnapKV's votes read back from the GPU: for the layers whose presses read the observation
 * window only through `windowVotes` (`PressNeeds.windowVotesOnly`), the window is summed on the
 * GPU (`windowVotes.ts`) for every such (layer, window) in one submission, and all results are read
 * back together — `H × N` values per layer instead of `H × rows × N`, and one readback floor
 * (≥ 10 ms in Deno) instead of one per layer.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { windowVotes } from "../gpu/kernels/windowVotes.ts";
import { runOps } from "../gpu/op.ts";
import type { PlanPress } from "../plan/plan.ts";
import type { PressNeeds } from "../plugins/schema.ts";
import type { Observation } from "./generationTypes.ts";
import type { HeadAssignment } from "./planResolver.ts";

/** Votes per (layer, window): per query head, `N` sums (see `LayerScoresInput.windowVotes`). */
export type WindowVotes = Map<string, Float32Array[]>;

/** The key of a layer's votes over its last `window` observation rows. */
export function votesKey(layer: number, window: number): string {
  return `${layer}:${window}`;
}

/** Sums and reads back the requested windows (`layer → windows`) of a prompt observation. */
export async function readWindowVotes(
  ctx: GpuContext,
  obs: Observation,
  numHeads: number,
  requests: Map<number, Set<number>>,
): Promise<WindowVotes> {
  const N = obs.stride;
  const jobs = [...requests].flatMap(([layer, ws]) => [...ws].map((window) => ({ layer, window })));
  const out: WindowVotes = new Map();
  if (!jobs.length) return out;
  const buffers = jobs.map(({ layer }) =>
    ctx.createBuffer(numHeads * N * 4, undefined, `votes ${layer}`)
  );
  const ops = jobs.map(({ layer, window }, i) =>
    windowVotes(ctx, {
      obs: obs.buffers[layer],
      votes: buffers[i],
      numHeads,
      rows: obs.rows,
      window,
      stride: N,
    })
  );
  try {
    runOps(ctx, ops);
    const data = await Promise.all(buffers.map((b) => ctx.readF32(b)));
    jobs.forEach(({ layer, window }, i) => {
      const heads = Array.from({ length: numHeads }, (_, h) => data[i].subarray(h * N, h * N + N));
      out.set(votesKey(layer, window), heads);
    });
    return out;
  } finally {
    for (const op of ops) op.destroy();
    for (const b of buffers) ctx.release(b);
  }
}

/**
 * Per layer, the windows (`min(window, N)`) whose votes its presses read — only for layers where
 * every press that needs the observation declares `windowVotesOnly`.
 */
export function votesRequests(
  assignments: HeadAssignment[][],
  needsOf: (p: PlanPress) => PressNeeds | undefined,
  promptLength: number,
): Map<number, Set<number>> {
  const requests = new Map<number, Set<number>>();
  assignments.forEach((row, l) => {
    const presses = row.flatMap((a) => a.pipeline).filter((p) => needsOf(p)?.observationWindow);
    if (!presses.length || !presses.every((p) => needsOf(p)?.windowVotesOnly)) return;
    const windows = presses.map((p) =>
      Math.min(needsOf(p)!.observationWindow!(p.params), promptLength)
    );
    requests.set(l, new Set(windows));
  });
  return requests;
}

/** The votes of a layer's observation read back whole (`[H][rows][N]`), summed on the CPU. */
export function sumWindowRows(
  obs: Float32Array,
  o: Pick<Observation, "rows" | "stride">,
  window: number,
  numHeads: number,
): Float32Array[] {
  const { rows, stride: N } = o;
  return Array.from({ length: numHeads }, (_, h) => {
    const sums = new Float64Array(N);
    for (let r = rows - window; r < rows; r++) {
      const at = (h * rows + r) * N;
      for (let j = 0; j < N; j++) sums[j] += obs[at + j];
    }
    return Float32Array.from(sums);
  });
}
