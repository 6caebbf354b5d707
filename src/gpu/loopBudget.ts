/**
 * Mesa llvmpipe's loop budget. gallivm keeps one loop-iteration counter per shader invocation,
 * shared by every loop that was not unrolled (`LP_MAX_TGSI_LOOP_ITERATIONS`); once 65535
 * iterations are spent, every loop exits at once and the kernel silently computes garbage. NIR
 * unrolls loops with small constant trip counts (head-dimension loops up to head_dim 128 in
 * practice, not at 256), so kernels write their head-dimension loops out in full
 * (`unrolledDot` in `kernels/wgslUnroll.ts`) and keep their remaining per-invocation loops within the budget — by
 * splitting work over dispatches where it grows with the prompt, and with
 * {@link checkLoopBudget} where the bound is fixed by the shape.
 *
 * @module
 */

import { type GpuContext, GpuUnavailableError } from "./device.ts";

/** Loop iterations one llvmpipe shader invocation may run before its loops stop. */
export const LLVMPIPE_LOOP_BUDGET = 65535;

/** The budget a kernel plans with: {@link LLVMPIPE_LOOP_BUDGET} less room for fixed loops. */
export const PLANNED_LOOP_BUDGET = LLVMPIPE_LOOP_BUDGET - 4096;

/**
 * Refuses, on a software adapter, a dispatch whose invocations would run more than
 * {@link PLANNED_LOOP_BUDGET} loop iterations: a clear error before any work instead of silently
 * wrong numbers. `what` names the kernel and the quantity that grew (e.g. "probe positions").
 */
export function checkLoopBudget(ctx: GpuContext, iterations: number, what: string): void {
  if (!ctx.isFallbackAdapter || iterations <= PLANNED_LOOP_BUDGET) return;
  throw new GpuUnavailableError(
    `${what} is too long for this software adapter: ${Math.ceil(iterations)} loop ` +
      `iterations per invocation, llvmpipe stops every loop after ${LLVMPIPE_LOOP_BUDGET} ` +
      `(results would be wrong); use a shorter input or a hardware GPU`,
  );
}
