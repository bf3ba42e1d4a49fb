/**
 * A synchronous API error as a value: HTTP status plus the DashScope `{code, message}` pair
 * (reference §5.1). Validation, faults and routing return these; only the server turns them into responses.
 */
export interface ApiError {
  status: number;
  code: string;
  message: string;
  /** Extra response headers, e.g. Retry-After on throttling. */
  headers?: Readonly<Record<string, string>>;
}

export function apiError(status: number, code: string, message: string, headers?: Record<string, string>): ApiError {
  return headers ? { status, code, message, headers } : { status, code, message };
}

/** Shorthand for the most common rejection. */
export function invalidParameter(message: string): ApiError {
  return apiError(400, 'InvalidParameter', message);
}

/** DashScope's wording (including its typo) for server-side faults. */
export const INTERNAL_ERROR_MESSAGE = 'An internal error has occured, please try again later or contact service support.';
