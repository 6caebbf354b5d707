/**
 * Which prefill attention kernel a device runs (`ctx.kernels.prefill`).
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { flashPrefillAttention } from "../gpu/kernels/flashPrefillAttention.ts";
import { prefillAttention } from "../gpu/kernels/prefillAttention.ts";
import { workgroupPrefillAttention } from "../gpu/kernels/workgroupPrefillAttention.ts";

/**
 * The prefill attention kernel chosen for this device (`ctx.kernels.prefill`): by default the
 * register-blocked flash kernel on CPU adapters (llvmpipe) and the thread-per-(query, head) kernel
 * on GPUs. On an H100 the latter ran 128 queries × 4096 keys (H32/KV8, D64) in 18.5 ms against
 * 46.8 ms, and the flash kernel's register blocks (8 queries × 128 dims per thread with the
 * observation window) lost the device there (bench/NOTES.md, section 4).
 */
export function prefillAttentionFor(ctx: GpuContext): typeof prefillAttention {
  switch (ctx.kernels.prefill) {
    case "flash":
      return flashPrefillAttention;
    case "workgroup":
      return workgroupPrefillAttention;
    case "thread":
      return prefillAttention;
  }
}
