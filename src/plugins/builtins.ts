/**
 * The built-in presses and detectors, registered through the same interface third-party plugins
 * use.
 *
 * @module
 */

import { adakvPress } from "./adakvPress.ts";
import { adaptivePress } from "./adaptivePress.ts";
import { chunkedPress } from "./chunkedPress.ts";
import { chunkkvPress } from "./chunkkvPress.ts";
import { compensatePress } from "./compensatePress.ts";
import { criticalPress } from "./criticalPress.ts";
import { decodingPress } from "./decodingPress.ts";
import { dmsPress } from "./dmsPress.ts";
import { expectedAttentionPress } from "./expectedAttentionPress.ts";
import { fullPress } from "./fullPress.ts";
import { h2oPress } from "./h2oPress.ts";
import { keydiffPress } from "./keydiffPress.ts";
import { knormPress } from "./knormPress.ts";
import { kvzipPress } from "./kvzipPress.ts";
import { duoDetector } from "./duoDetector.ts";
import { lazyDetector } from "./lazyDetector.ts";
import { pyramidPress } from "./pyramidPress.ts";
import { quantPress } from "./quantPress.ts";
import { randomPress } from "./randomPress.ts";
import { PluginRegistry } from "./registry.ts";
import { retrievalDetector } from "./retrievalDetector.ts";
import type { PluginSchema } from "./schema.ts";
import { snapPress } from "./snapPress.ts";
import { tovaPress } from "./tovaPress.ts";
import { windowPress } from "./windowPress.ts";

/** Every built-in plugin schema. */
export const BUILTIN_PLUGINS: readonly PluginSchema[] = [
  fullPress,
  windowPress,
  snapPress,
  h2oPress,
  knormPress,
  keydiffPress,
  tovaPress,
  expectedAttentionPress,
  kvzipPress,
  randomPress,
  chunkkvPress,
  dmsPress,
  criticalPress,
  adaptivePress,
  pyramidPress,
  adakvPress,
  compensatePress,
  decodingPress,
  chunkedPress,
  quantPress,
  lazyDetector,
  retrievalDetector,
  duoDetector,
];

/** A fresh registry holding the built-ins. */
export function defaultRegistry(): PluginRegistry {
  const registry = new PluginRegistry();
  for (const plugin of BUILTIN_PLUGINS) registry.register(plugin);
  return registry;
}
