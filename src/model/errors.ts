/**
 * The error type of the model layer.
 *
 * @module
 */

/**
 * A user-facing problem with a model folder (bad config, truncated or lying safetensors file,
 * missing tensor, unsupported architecture). The message names the file and the field or tensor;
 * the CLI prints it as is and exits with code 1, without a stack trace.
 */
export class ModelError extends Error {
  /** Creates an error with a complete, user-facing message. */
  constructor(message: string) {
    super(message);
    this.name = "ModelError";
  }
}
