/**
 * The GPU device layer: acquiring a WebGPU device with the adapter's real limits, buffers,
 * uploads, readbacks, a pipeline cache, and clear errors when the device is lost.
 *
 * @module
 */

import { defaultKernels, type KernelChoice, parseKernelChoice } from "./kernelChoice.ts";

/** Limits that the kernels depend on, as granted by the device (adapter maxima). */
export interface GpuLimits {
  /** Largest storage-buffer binding in bytes. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer in bytes. */
  maxBufferSize: number;
  /** Workgroup memory per workgroup in bytes. */
  maxComputeWorkgroupStorageSize: number;
  /** Invocations per workgroup. */
  maxComputeInvocationsPerWorkgroup: number;
  /** Workgroup size along x. */
  maxComputeWorkgroupSizeX: number;
  /** Workgroups per dispatch dimension. */
  maxComputeWorkgroupsPerDimension: number;
  /** Storage buffers per shader stage. */
  maxStorageBuffersPerShaderStage: number;
  /** Alignment of storage-binding offsets in bytes. */
  minStorageBufferOffsetAlignment: number;
  /** Alignment of uniform-binding offsets in bytes. */
  minUniformBufferOffsetAlignment: number;
}

const REQUESTED_LIMITS: (keyof GpuLimits)[] = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "minStorageBufferOffsetAlignment",
  "minUniformBufferOffsetAlignment",
];

/**
 * Throws a {@link GpuUnavailableError} when `kernels` choose a `shader-f16` path (`f16=native`,
 * `math=f16`) that `features` lack, naming the choices.
 */
export function checkKernelFeatures(kernels: KernelChoice, features: GpuFeatures): void {
  const f16Choices = [
    kernels.f16 === "native" ? "f16=native" : "",
    kernels.math === "f16" ? "math=f16" : "",
  ].filter(Boolean);
  if (f16Choices.length && !features.shaderF16) {
    throw new GpuUnavailableError(
      `${f16Choices.join(", ")} (KVPOLICY_KERNELS) needs the shader-f16 feature, ` +
        "which this adapter lacks",
    );
  }
}

/** A running peak of a {@link GpuContext}'s buffer bytes (see `GpuContext.watchMemory`). */
export interface MemoryWatch {
  /** The most bytes live at once since the watch began. */
  peak: number;
  /** Stops updating `peak`. */
  stop(): void;
}

/** Optional features the runtime can use; none is required. */
export interface GpuFeatures {
  /** `shader-f16` is available (enabled on the device when present). */
  shaderF16: boolean;
  /** `timestamp-query` is available (enabled on the device when present). */
  timestampQuery: boolean;
}

/** Options of {@link acquireDevice}. */
export interface AcquireOptions {
  /** Adapter power preference. */
  powerPreference?: GPUPowerPreference;
  /** Device label (shows up in WebGPU error messages). */
  label?: string;
  /**
   * Caps the storage-binding size the kernels assume (bytes), below the device limit. Used by
   * tests to exercise the split-binding paths with small tensors.
   */
  maxBindingBytes?: number;
  /** Kernel choices over the adapter's defaults (see `kernelChoice.ts`). */
  kernels?: Partial<KernelChoice>;
}

/** Thrown by every operation on a context whose device was lost or destroyed. */
export class GpuDeviceLostError extends Error {
  /** Creates the error from the device-loss reason and message. */
  constructor(reason: string, message: string) {
    super(
      `WebGPU device lost (${reason})${message ? `: ${message}` : ""}; ` +
        "create a new device (acquireDevice) to continue",
    );
    // A user-facing failure of the machine, not a bug: the CLI prints it and exits 1.
    this.name = "GpuError";
  }
}

/** Thrown when WebGPU reported a validation / out-of-memory / internal error. */
export class GpuValidationError extends Error {
  /** Creates the error from the WebGPU message. */
  constructor(message: string) {
    super(`WebGPU error: ${message}`);
    this.name = "GpuValidationError";
  }
}

/** A buffer or a range of one, as accepted by kernel wrappers. */
export type BufferRef = GPUBuffer | GPUBufferBinding;

/** Normalises a {@link BufferRef} to a binding resource. */
export function bindingOf(ref: BufferRef): GPUBufferBinding {
  return "buffer" in ref ? ref : { buffer: ref };
}

/** Rounds `n` up to a multiple of `a`. */
export function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Usage of activation / scratch buffers: storage, copy source and destination. */
export const STORAGE_USAGE: number = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/**
 * An acquired WebGPU device with its limits and features, a buffer registry (everything created
 * through it is destroyed by {@link GpuContext.destroy}), readback helpers and a pipeline cache.
 */
export class GpuContext {
  /** The underlying device. */
  readonly device: GPUDevice;
  /** Adapter description (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"). */
  readonly adapterDescription: string;
  /** True for software adapters such as llvmpipe. */
  readonly isFallbackAdapter: boolean;
  /** Granted limits. */
  readonly limits: GpuLimits;
  /** Optional features enabled on the device. */
  readonly features: GpuFeatures;
  /** Largest storage binding the kernels use (bytes): the device limit or a smaller test cap. */
  readonly maxBindingBytes: number;
  /** Which kernel runs ops that have several (by adapter kind, or as requested). */
  readonly kernels: KernelChoice;
  #lost: GpuDeviceLostError | null = null;
  #error: GpuValidationError | null = null;
  #lostPromise: Promise<GpuDeviceLostError>;
  #buffers = new Set<GPUBuffer>();
  #pipelines = new Map<string, GPUComputePipeline>();
  #fence: GPUBuffer | null = null;
  #unprimed = new Map<GPUComputePipeline, GPUBindGroup>();
  #primed = new WeakSet<GPUComputePipeline>();
  #zeroGroups: GPUBuffer | null = null;
  #liveBytes = 0;
  #peakBytes = 0;
  #watches = new Set<MemoryWatch>();

  /**
   * Told how {@link compilePending} is going: kernels compiled, kernels in this batch, and
   * milliseconds since the batch began (the CLI's "compiling GPU kernels" line).
   */
  onCompileProgress: ((done: number, total: number, ms: number) => void) | null = null;

  /** Wraps a device; use {@link acquireDevice} instead. */
  constructor(
    device: GPUDevice,
    info: { description: string; isFallbackAdapter: boolean },
    limits: GpuLimits,
    features: GpuFeatures,
    maxBindingBytes: number,
    kernels: KernelChoice = defaultKernels(info.isFallbackAdapter),
  ) {
    this.device = device;
    this.adapterDescription = info.description;
    this.isFallbackAdapter = info.isFallbackAdapter;
    this.limits = limits;
    this.features = features;
    this.maxBindingBytes = maxBindingBytes;
    this.kernels = kernels;
    this.#lostPromise = device.lost.then((i) => {
      this.#lost = new GpuDeviceLostError(i.reason ?? "unknown", i.message);
      return this.#lost;
    });
    device.addEventListener("uncapturederror", (e) => {
      if (!this.#error) {
        this.#error = new GpuValidationError((e as GPUUncapturedErrorEvent).error.message);
      }
    });
  }

  /** Whether the device was lost or destroyed. */
  get lost(): boolean {
    return this.#lost !== null;
  }

  /** Throws if the device is lost or an uncaptured WebGPU error was reported. */
  check(): void {
    if (this.#lost) throw this.#lost;
    if (this.#error) {
      const e = this.#error;
      this.#error = null;
      throw e;
    }
  }

  /** Creates a buffer (size rounded up to 4 bytes, at least 16) tracked for {@link destroy}. */
  createBuffer(size: number, usage: number = STORAGE_USAGE, label = ""): GPUBuffer {
    this.check();
    const bytes = Math.max(16, alignUp(size, 4));
    if (bytes > this.limits.maxBufferSize) {
      throw new RangeError(
        `buffer "${label}" needs ${bytes} bytes; the device allows ${this.limits.maxBufferSize}`,
      );
    }
    const buffer = this.#track(this.device.createBuffer({ size: bytes, usage, label }));
    this.#buffers.add(buffer);
    return buffer;
  }

  /**
   * Counts `buffer`'s bytes as live until it is destroyed (through {@link release}, its own
   * `destroy()`, or {@link destroy}), and raises {@link memory}'s peak.
   */
  #track(buffer: GPUBuffer): GPUBuffer {
    const bytes = buffer.size;
    this.#liveBytes += bytes;
    this.#peakBytes = Math.max(this.#peakBytes, this.#liveBytes);
    for (const w of this.#watches) w.peak = Math.max(w.peak, this.#liveBytes);
    const destroy = buffer.destroy.bind(buffer);
    let live = true;
    buffer.destroy = () => {
      if (live) {
        live = false;
        this.#liveBytes -= bytes;
        this.#buffers.delete(buffer);
      }
      destroy();
    };
    return buffer;
  }

  /**
   * Device memory this context holds in buffers (weights, activations, the KV cache, scratch and
   * staging buffers for readbacks), in bytes: `live` now, and the `peak` since the context was
   * made. What the driver allocates on its own (pipelines, command buffers) is not included:
   * WebGPU does not report it.
   */
  get memory(): { live: number; peak: number } {
    return { live: this.#liveBytes, peak: this.#peakBytes };
  }

  /**
   * Starts watching {@link memory}: the watch's `peak` is the most bytes live at once from now
   * until `stop()` (the whole device's, so it includes whatever else runs meanwhile).
   */
  watchMemory(): MemoryWatch {
    const watch = { peak: this.#liveBytes, stop: () => this.#watches.delete(watch) };
    this.#watches.add(watch);
    return watch;
  }

  /** Creates a storage buffer holding `data` (padded with zeros to 4 bytes). */
  upload(data: ArrayBufferView, usage: number = STORAGE_USAGE, label = ""): GPUBuffer {
    const buffer = this.createBuffer(data.byteLength, usage | GPUBufferUsage.COPY_DST, label);
    this.write(buffer, 0, data);
    return buffer;
  }

  /** Writes `data` at byte `offset` (a multiple of 4); the tail is zero-padded to 4 bytes. */
  write(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    this.check();
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength) as Uint8Array<
      ArrayBuffer
    >;
    if (bytes.byteLength % 4 !== 0 || !(data.buffer instanceof ArrayBuffer)) {
      const padded = new Uint8Array(alignUp(bytes.byteLength, 4));
      padded.set(bytes);
      bytes = padded;
    }
    if (bytes.byteLength > 0) this.device.queue.writeBuffer(buffer, offset, bytes);
  }

  /** Destroys a buffer created through this context. */
  release(buffer: GPUBuffer): void {
    this.#buffers.delete(buffer);
    buffer.destroy();
  }

  /**
   * Copies `size` bytes at `offset` of `buffer` back to the CPU. Costs ≥ 10 ms in Deno: read back
   * in batches. Rejects with {@link GpuDeviceLostError} instead of hanging if the device is lost.
   */
  async read(buffer: GPUBuffer, offset = 0, size = buffer.size - offset): Promise<ArrayBuffer> {
    this.check();
    const staging = this.#track(this.device.createBuffer({
      size: alignUp(size, 4),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    }));
    try {
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(buffer, offset, staging, 0, alignUp(size, 4));
      this.device.queue.submit([enc.finish()]);
      const lost = this.#lostPromise.then((e) => Promise.reject(e));
      lost.catch(() => {});
      await Promise.race([staging.mapAsync(GPUMapMode.READ), lost]);
      const out = staging.getMappedRange().slice(0, size);
      staging.unmap();
      this.check();
      return out;
    } catch (e) {
      // A destroyed device can fail the map before its `lost` promise settles: wait briefly for
      // it so the caller gets the clear device-lost error rather than a bare OperationError.
      if (!this.#lost) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const pause = new Promise((resolve) => timer = setTimeout(resolve, 200));
        await Promise.race([this.#lostPromise, pause]);
        clearTimeout(timer);
      }
      if (this.#lost) throw this.#lost;
      throw e;
    } finally {
      staging.destroy();
    }
  }

  /** Reads `count` f32 values starting at element `start`. */
  async readF32(buffer: GPUBuffer, start = 0, count?: number): Promise<Float32Array> {
    const n = count ?? buffer.size / 4 - start;
    return new Float32Array(await this.read(buffer, start * 4, n * 4));
  }

  /** Reads `count` u32 values starting at element `start`. */
  async readU32(buffer: GPUBuffer, start = 0, count?: number): Promise<Uint32Array> {
    const n = count ?? buffer.size / 4 - start;
    return new Uint32Array(await this.read(buffer, start * 4, n * 4));
  }

  /**
   * Returns the compute pipeline cached under `key`, building it from `code()` (entry point
   * `main`, layout `auto`) on first use. `key` must identify the kernel and its specialisation.
   */
  pipeline(key: string, code: () => string): GPUComputePipeline {
    this.check();
    let p = this.#pipelines.get(key);
    if (!p) {
      const wgsl = code();
      // f16 storage (kernels.f16 = native: `vec4<f16>` arrays) needs the directive, which must
      // open the module.
      const module = this.device.createShaderModule({
        code: wgsl.includes("<f16>") ? `enable f16;\n${wgsl}` : wgsl,
        label: key,
      });
      p = this.device.createComputePipeline({
        layout: "auto",
        compute: { module, entryPoint: "main" },
        label: key,
      });
      this.#pipelines.set(key, p);
    }
    return p;
  }

  /**
   * Notes that `pipeline` will be dispatched with `bindGroup` (by `dispatchOp`), so that
   * {@link compilePending} can compile it ahead of its first real dispatch.
   */
  notePipelineUse(pipeline: GPUComputePipeline, bindGroup: GPUBindGroup): void {
    if (!this.#primed.has(pipeline)) this.#unprimed.set(pipeline, bindGroup);
  }

  /** Records that `pipeline` was dispatched for real (so it is compiled by then). */
  notePipelineDispatched(pipeline: GPUComputePipeline): void {
    this.#primed.add(pipeline);
    this.#unprimed.delete(pipeline);
  }

  /**
   * Compiles every pipeline noted but not yet dispatched, one at a time, reporting to
   * {@link onCompileProgress}. Software adapters (Mesa's llvmpipe) compile a shader at its first
   * dispatch, seconds each on a fresh machine, so the engine calls this before it runs a batch of
   * new steps: the wait becomes a visible count instead of silence. Each pipeline gets an
   * indirect dispatch of zero workgroups (nothing runs) with the bind group it will really use,
   * in its own submission followed by a 4-byte readback; the readbacks are awaited in order.
   * Validation errors of these dispatches (e.g. a noted op whose buffers were freed since) are
   * caught here and dropped: the real dispatch reports them.
   */
  async compilePending(): Promise<void> {
    this.check();
    if (this.#unprimed.size === 0) return;
    const jobs = [...this.#unprimed];
    this.#unprimed.clear();
    this.#zeroGroups ??= this.upload(
      new Uint32Array(4),
      GPUBufferUsage.INDIRECT | GPUBufferUsage.STORAGE,
      "zero workgroups",
    );
    this.#fence ??= this.createBuffer(16, STORAGE_USAGE, "fence");
    const t0 = performance.now();
    const stagings: GPUBuffer[] = [];
    try {
      this.device.pushErrorScope("validation");
      for (const [pipeline, group] of jobs) {
        const staging = this.device.createBuffer({
          size: 4,
          usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        });
        stagings.push(staging);
        const enc = this.device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroupsIndirect(this.#zeroGroups, 0);
        pass.end();
        enc.copyBufferToBuffer(this.#fence, 0, staging, 0, 4);
        this.device.queue.submit([enc.finish()]);
        this.#primed.add(pipeline);
      }
      await this.device.popErrorScope();
      const lost = this.#lostPromise.then((e) => Promise.reject(e));
      lost.catch(() => {});
      for (let i = 0; i < stagings.length; i++) {
        await Promise.race([stagings[i].mapAsync(GPUMapMode.READ), lost]);
        this.onCompileProgress?.(i + 1, jobs.length, performance.now() - t0);
      }
    } finally {
      for (const b of stagings) b.destroy();
    }
    this.check();
  }

  /** Number of cached pipelines. */
  get pipelineCount(): number {
    return this.#pipelines.size;
  }

  /** Keys of the cached pipelines (which kernel variants ran; for diagnostics and tests). */
  pipelineKeys(): string[] {
    return [...this.#pipelines.keys()];
  }

  /**
   * Waits until submitted work is done (≈ 10 ms in Deno), then reports errors. Implemented as a
   * 4-byte readback rather than `onSubmittedWorkDone`, whose promise never settles (a leaked op)
   * when the device is destroyed while it waits; a map is rejected then, see {@link read}.
   */
  async sync(): Promise<void> {
    this.#fence ??= this.createBuffer(16, STORAGE_USAGE, "fence");
    await this.read(this.#fence, 0, 4);
  }

  /** Destroys every tracked buffer and the device. Later operations throw. */
  destroy(): void {
    for (const b of [...this.#buffers]) b.destroy();
    this.#buffers.clear();
    this.#fence = null;
    this.#zeroGroups = null;
    this.#unprimed.clear();
    this.#pipelines.clear();
    this.device.destroy();
  }
}

/**
 * Raised when no usable WebGPU adapter exists, or the device's limits cannot hold what a model
 * needs (a user-facing error: exit code 1).
 */
export class GpuUnavailableError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "GpuError";
  }
}

/** The message of the error thrown when no adapter is found. */
export const NO_ADAPTER_MESSAGE =
  "no WebGPU adapter found; on Linux install mesa-vulkan-drivers (software Vulkan, llvmpipe) " +
  "or a GPU driver, and select a backend with DENO_WEBGPU_BACKEND=vulkan|gl if needed";

/**
 * `KVPOLICY_KERNELS` (e.g. `prefill=workgroup,gemm=tiled,f16=native`) overrides the adapter's
 * kernel choices (`kernelChoice.ts`); unset, or without --allow-env, means the defaults.
 */
function kernelsFromEnv(): Partial<KernelChoice> | undefined {
  let text: string | undefined;
  try {
    text = Deno.env.get("KVPOLICY_KERNELS");
  } catch {
    return undefined; // no --allow-env
  }
  return text ? parseKernelChoice(text) : undefined;
}

/**
 * Requests an adapter and a device with the adapter's real compute limits, enabling
 * `shader-f16` and `timestamp-query` when present. Throws a clear error when WebGPU or an
 * adapter is unavailable.
 */
export async function acquireDevice(opts: AcquireOptions = {}): Promise<GpuContext> {
  if (typeof navigator === "undefined" || !navigator.gpu) {
    throw new GpuUnavailableError(`navigator.gpu is unavailable; ${NO_ADAPTER_MESSAGE}`);
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: opts.powerPreference });
  if (!adapter) throw new GpuUnavailableError(NO_ADAPTER_MESSAGE);
  const requiredLimits: Record<string, number> = {};
  for (const k of REQUESTED_LIMITS) requiredLimits[k] = adapter.limits[k];
  const requiredFeatures: GPUFeatureName[] = [];
  const features: GpuFeatures = {
    shaderF16: adapter.features.has("shader-f16"),
    timestampQuery: adapter.features.has("timestamp-query"),
  };
  if (features.shaderF16) requiredFeatures.push("shader-f16");
  if (features.timestampQuery) requiredFeatures.push("timestamp-query");
  const info = adapter.info;
  const kernels = {
    ...defaultKernels(info.isFallbackAdapter),
    ...kernelsFromEnv(),
    ...opts.kernels,
  };
  checkKernelFeatures(kernels, features);
  const device = await adapter.requestDevice({
    requiredLimits,
    requiredFeatures,
    label: opts.label ?? "kvpolicy",
  });
  const description = info.description ||
    [info.vendor, info.architecture, info.device].filter(Boolean).join(" ") || "unnamed adapter";
  const limits = {} as GpuLimits;
  for (const k of REQUESTED_LIMITS) limits[k] = device.limits[k];
  const cap = opts.maxBindingBytes ?? limits.maxStorageBufferBindingSize;
  return new GpuContext(
    device,
    { description, isFallbackAdapter: info.isFallbackAdapter },
    limits,
    features,
    Math.min(cap, limits.maxStorageBufferBindingSize),
    kernels,
  );
}
