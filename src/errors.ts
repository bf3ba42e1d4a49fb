/**
 * Errors are values with a kind. The CLI maps each kind to a message and an exit code in one place;
 * activities map them to Temporal failures (retryable or not).
 */

/** The user must fix an input (a file, a prompt, a flag). Never retryable. */
export class InputError extends Error {
  override readonly name = 'InputError';
  constructor(
    message: string,
    /** A short category, stable for scripts: e.g. 'image-too-small', 'prompt-missing'. */
    readonly category: string,
    /** One line telling the user what to do. */
    readonly fix?: string,
  ) {
    super(message);
  }
}

/** The setup is wrong (missing key, unreachable server, bad flag combination). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(message: string, readonly fix?: string) {
    super(message);
  }
}

/** A failure reported by (or on the way to) the video provider. */
export class ProviderError extends Error {
  override readonly name = 'ProviderError';
  readonly httpStatus: number | undefined;
  readonly code: string;
  readonly retryable: boolean;
  /** Server-requested wait before retrying (from Retry-After), in milliseconds. */
  readonly retryAfterMs: number | undefined;
  readonly requestId: string | undefined;
  /**
   * True when a request may have reached the provider but its outcome is unknown
   * (sent, then timeout or connection reset). For a paid submission this must not be retried blindly.
   */
  readonly outcomeUnknown: boolean;

  constructor(init: {
    message: string;
    code: string;
    retryable: boolean;
    httpStatus?: number;
    retryAfterMs?: number;
    requestId?: string;
    outcomeUnknown?: boolean;
  }) {
    super(init.message);
    this.code = init.code;
    this.retryable = init.retryable;
    this.httpStatus = init.httpStatus;
    this.retryAfterMs = init.retryAfterMs;
    this.requestId = init.requestId;
    this.outcomeUnknown = init.outcomeUnknown ?? false;
  }
}

/** Thrown by CLI commands to end the process with a specific exit code after printing `message`. */
export class ExitError extends Error {
  override readonly name = 'ExitError';
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

/** Replaces every occurrence of each secret in `text`; used on anything that may reach a log or an error. */
export function redact(text: string, secrets: ReadonlyArray<string | undefined>): string {
  let out = text;
  for (const s of secrets) {
    if (s && s.length >= 4) out = out.split(s).join('***');
  }
  return out;
}
