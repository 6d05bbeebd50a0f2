// The error for a mistake in the user's data or options (a CSV row, a flag, a model folder): the CLI prints its
// one-line message without a stack trace and exits 1.
/** A mistake in the user's data or options: the message is one line, ready to print without a stack. */
export class DataError extends Error {
  override readonly name = 'DataError';
  constructor(
    message: string,
    readonly file?: string,
    readonly line?: number,
  ) {
    super(message);
  }
}
