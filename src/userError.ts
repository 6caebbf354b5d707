/**
 * The user-facing error every layer may throw for a user's mistake (bad flag, bad file, bad
 * suite): the CLI prints its message and exits 1, with no stack trace.
 *
 * @module
 */

/** A mistake by the user: exit code 1. */
export class UserError extends Error {
  /** Builds the error with its message. */
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}
