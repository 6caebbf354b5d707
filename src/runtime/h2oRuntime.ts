/**
 * H2O on the real cache. After prefill, `h2oPrefill` (src/plugins/h2oPress.ts) runs on the
 * GPU-accumulated column sums and the cache is compacted to its kept entries; then every decode
 * step records `h2oEvict` after each layer's attention (a {@link StepHook} on the cache), which
 * adds the new query's attention to per-row scores and evicts on the GPU — no readback.
 *
 * Per layer with H2O heads: a scores buffer (f32 per cache row) and a state buffer (u32: per-head
 * limit and recent, then the position of every cache row), initialised from the prefill states.
 * A head's capacity is heavy + recent + 1 (the incoming token is attended before the eviction
 * that brings the head back to heavy + recent), or less when the budget never reaches it.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { H2O_NONE, h2oEvict } from "../gpu/kernels/h2oEvict.ts";
import { isQuantLayer } from "../gpu/quantKvCache.ts";
import type { H2oHeadState } from "../plugins/h2oPress.ts";
import { attentionScale } from "../model/attentionScale.ts";
import type { ModelConfig } from "../model/types.ts";
import type { RaggedKvCache, StepHook } from "./raggedKvCache.ts";

/** Rows a head with H2O state `s` needs when `decodeBudget` more tokens will be appended. */
export function h2oCapacity(s: H2oHeadState, decodeBudget: number): number {
  return Math.min(s.positions.length + decodeBudget, s.heavy + s.recent + 1);
}

/** The H2O step hook, which can also report what its heads hold. */
export interface H2oStepHook extends StepHook {
  /**
   * The positions held by the first `lengths[layer][kvHead]` rows of every H2O head (undefined
   * for other heads), in row order — one readback per layer; for tests and inspection.
   */
  positions(lengths: number[][]): Promise<(number[] | undefined)[][]>;
}

/**
 * Uploads the decode state of every H2O head (`states[layer][kvHead]`, undefined for other
 * heads) of the already compacted `cache` and returns the hook recording `h2oEvict` per layer.
 */
export function createH2oStepHook(
  ctx: GpuContext,
  cache: RaggedKvCache,
  config: ModelConfig,
  states: (H2oHeadState | undefined)[][],
): H2oStepHook {
  const buffers: GPUBuffer[] = [];
  const perLayer = states.map((heads, l) => {
    if (!heads.some((s) => s)) return undefined;
    const layer = cache.layers[l];
    if (isQuantLayer(layer)) throw new Error(`H2O layer ${l} cannot be quantised`);
    const H = layer.numKvHeads;
    const scores = new Float32Array(Math.max(1, layer.totalRows));
    const state = new Uint32Array(2 * H + layer.totalRows).fill(H2O_NONE, 0, H);
    heads.forEach((s, h) => {
      if (!s) return;
      state[h] = s.heavy + s.recent;
      state[H + h] = s.recent;
      state.set(s.positions, 2 * H + layer.bases[h]);
      scores.set(s.scores, layer.bases[h]);
    });
    const b = {
      layer,
      scores: ctx.upload(scores, undefined, `h2o scores ${l}`),
      state: ctx.upload(state, undefined, `h2o state ${l}`),
    };
    buffers.push(b.scores, b.state);
    return b;
  });
  return {
    op(l, layer, q, positions, positionsOffset) {
      const b = perLayer[l];
      if (!b) return undefined;
      if (layer !== b.layer) throw new Error(`H2O layer ${l}: the cache was replaced`);
      return h2oEvict(ctx, {
        cache: layer,
        q,
        numHeads: config.numHeads,
        scale: attentionScale(config),
        positions,
        positionsOffset,
        scores: b.scores,
        state: b.state,
      });
    },
    async positions(lengths) {
      const out: (number[] | undefined)[][] = [];
      for (const [l, b] of perLayer.entries()) {
        const H = lengths[l].length;
        if (!b) {
          out.push(Array(H).fill(undefined));
          continue;
        }
        const state = await ctx.readU32(b.state);
        out.push(Array.from({ length: H }, (_, h) => {
          if (states[l][h] === undefined) return undefined;
          const at = 2 * H + b.layer.bases[h];
          return Array.from(state.subarray(at, at + lengths[l][h]));
        }));
      }
      return out;
    },
    buffers() {
      return [...buffers];
    },
    release() {
      for (const b of buffers.splice(0)) ctx.release(b);
    },
  };
}
