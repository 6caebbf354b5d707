/**
 * The KV cache of the CPU reference model: for every (layer, KV head) a ragged list of entries,
 * each a key (stored after RoPE), a value and the absolute position of the token it came from.
 * Entries stay in the order they were appended; {@link CpuKvCache.keep} compacts one
 * (layer, KV head) to an index set, as a compressing policy would, and kept entries keep their
 * positions. Everything is float64.
 *
 * @module
 */

/** One (layer, KV head) list of cached entries. */
class HeadCache {
  length = 0;
  keys: Float64Array;
  values: Float64Array;
  positions: Int32Array;

  constructor(private readonly headDim: number) {
    this.keys = new Float64Array(16 * headDim);
    this.values = new Float64Array(16 * headDim);
    this.positions = new Int32Array(16);
  }

  append(key: Float64Array, value: Float64Array, position: number): void {
    if (this.length === this.positions.length) this.grow(2 * this.length);
    const offset = this.length * this.headDim;
    this.keys.set(key, offset);
    this.values.set(value, offset);
    this.positions[this.length] = position;
    this.length++;
  }

  private grow(capacity: number): void {
    const keys = new Float64Array(capacity * this.headDim);
    const values = new Float64Array(capacity * this.headDim);
    const positions = new Int32Array(capacity);
    keys.set(this.keys.subarray(0, this.length * this.headDim));
    values.set(this.values.subarray(0, this.length * this.headDim));
    positions.set(this.positions.subarray(0, this.length));
    this.keys = keys;
    this.values = values;
    this.positions = positions;
  }
}

/** Per-(layer, KV head) cache of post-RoPE keys, values and positions. */
export class CpuKvCache {
  /** Number of decoder layers. */
  readonly numLayers: number;
  /** Number of KV heads per layer. */
  readonly numKvHeads: number;
  /** Elements per key or value vector. */
  readonly headDim: number;
  private readonly heads: HeadCache[];

  /** Creates an empty cache. */
  constructor(numLayers: number, numKvHeads: number, headDim: number) {
    this.numLayers = numLayers;
    this.numKvHeads = numKvHeads;
    this.headDim = headDim;
    this.heads = Array.from({ length: numLayers * numKvHeads }, () => new HeadCache(headDim));
  }

  /** Number of entries cached for (layer, kvHead). */
  length(layer: number, kvHead: number): number {
    return this.head(layer, kvHead).length;
  }

  /** Cached keys of (layer, kvHead): `length × headDim`, post-RoPE (a view; do not keep it). */
  keys(layer: number, kvHead: number): Float64Array {
    const head = this.head(layer, kvHead);
    return head.keys.subarray(0, head.length * this.headDim);
  }

  /** Cached values of (layer, kvHead): `length × headDim` (a view; do not keep it). */
  values(layer: number, kvHead: number): Float64Array {
    const head = this.head(layer, kvHead);
    return head.values.subarray(0, head.length * this.headDim);
  }

  /** Absolute token positions of the entries of (layer, kvHead) (a view; do not keep it). */
  positions(layer: number, kvHead: number): Int32Array {
    const head = this.head(layer, kvHead);
    return head.positions.subarray(0, head.length);
  }

  /** Appends one entry (`key` and `value` hold `headDim` elements; `key` is post-RoPE). */
  append(
    layer: number,
    kvHead: number,
    key: Float64Array,
    value: Float64Array,
    position: number,
  ): void {
    this.head(layer, kvHead).append(key, value, position);
  }

  /**
   * Keeps only the entries at `indices` (strictly increasing, each in `[0, length)`) of
   * (layer, kvHead), in that order; the others are dropped for good.
   */
  keep(layer: number, kvHead: number, indices: ArrayLike<number>): void {
    const head = this.head(layer, kvHead);
    const d = this.headDim;
    for (let i = 0; i < indices.length; i++) {
      const index = indices[i];
      if (!Number.isInteger(index) || index < 0 || index >= head.length) {
        throw new RangeError(
          `keep(layer ${layer}, kv head ${kvHead}): index ${index} is outside [0, ${head.length})`,
        );
      }
      if (i > 0 && index <= indices[i - 1]) {
        throw new RangeError(
          `keep(layer ${layer}, kv head ${kvHead}): indices must be strictly increasing`,
        );
      }
      // Moving entries forward in place is safe: index >= i for increasing indices.
      head.keys.copyWithin(i * d, index * d, (index + 1) * d);
      head.values.copyWithin(i * d, index * d, (index + 1) * d);
      head.positions[i] = head.positions[index];
    }
    head.length = indices.length;
  }

  /** Drops every entry of every (layer, KV head). */
  clear(): void {
    for (const head of this.heads) head.length = 0;
  }

  private head(layer: number, kvHead: number): HeadCache {
    if (
      !Number.isInteger(layer) || layer < 0 || layer >= this.numLayers ||
      !Number.isInteger(kvHead) || kvHead < 0 || kvHead >= this.numKvHeads
    ) {
      throw new RangeError(`no cache for layer ${layer}, kv head ${kvHead}`);
    }
    return this.heads[layer * this.numKvHeads + kvHead];
  }
}
