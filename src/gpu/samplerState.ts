/**
 * The sampler's GPU state, shared by the decode loop's kernels so that no step needs a readback:
 * the sampling kernels write the chosen token, append it to an ids buffer (read back in batches)
 * and advance the step and position counters; the next step's embedding lookup reads the token
 * and RoPE reads the position.
 *
 * `state` (u32 `[4]`): `[0]` last token id (embedding `idsOffset` {@link STATE_TOKEN}),
 * `[1]` tokens sampled so far (index of the next append into `ids`), `[2]` position of the next
 * token (RoPE `positionsOffset` {@link STATE_POSITION}), `[3]` reserved.
 *
 * @module
 */

import { type GpuContext, STORAGE_USAGE } from "./device.ts";

/** Index of the last token id in the state buffer. */
export const STATE_TOKEN = 0;
/** Index of the sampled-token counter in the state buffer. */
export const STATE_STEP = 1;
/** Index of the next position in the state buffer. */
export const STATE_POSITION = 2;

/** Sampler state and the ids it appends to. */
export interface SamplerState {
  /** u32 `[4]` (see module doc). */
  state: GPUBuffer;
  /** u32 `[idsCapacity]`: sampled ids in order; appends past the capacity are dropped. */
  ids: GPUBuffer;
  /** Capacity of `ids`. */
  idsCapacity: number;
}

/** Creates the state with the given first token and position (e.g. the prompt's last token). */
export function createSamplerState(
  ctx: GpuContext,
  o: { token: number; position: number; idsCapacity: number },
): SamplerState {
  return {
    state: ctx.upload(new Uint32Array([o.token, 0, o.position, 0]), STORAGE_USAGE, "sampler"),
    ids: ctx.createBuffer(o.idsCapacity * 4, STORAGE_USAGE, "sampled ids"),
    idsCapacity: o.idsCapacity,
  };
}

/** Reads `{token, step, position}` back (≥ 10 ms). */
export async function readSamplerState(
  ctx: GpuContext,
  s: SamplerState,
): Promise<{ token: number; step: number; position: number }> {
  const u = await ctx.readU32(s.state, 0, 4);
  return { token: u[STATE_TOKEN], step: u[STATE_STEP], position: u[STATE_POSITION] };
}

/** Reads sampled ids `[from, to)` back (≥ 10 ms: read in batches). */
export async function readSampledIds(
  ctx: GpuContext,
  s: SamplerState,
  from: number,
  to: number,
): Promise<number[]> {
  const n = Math.min(to, s.idsCapacity) - from;
  return n > 0 ? Array.from(await ctx.readU32(s.ids, from, n)) : [];
}

/** WGSL of `fn emit(id)`: writes the token, appends it to `ids`, advances step and position. */
export function emitWgsl(stateBinding: number, idsBinding: number): string {
  return `@group(0) @binding(${stateBinding}) var<storage, read_write> state: array<u32>;
@group(0) @binding(${idsBinding}) var<storage, read_write> ids: array<u32>;
fn emit(id: u32) {
  let s = state[${STATE_STEP}];
  if (s < arrayLength(&ids)) { ids[s] = id; }
  state[${STATE_TOKEN}] = id;
  state[${STATE_STEP}] = s + 1u;
  state[${STATE_POSITION}] += 1u;
}
`;
}
