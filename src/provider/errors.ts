/**
 * Pure error classification for the video API: what failed, and whether trying again can help.
 * No I/O here; the client feeds in what it saw. Rules follow ../shared/reference/video-api.md §5.
 */
import { ProviderError, redact } from '../errors';

/** Codes the client itself assigns (the provider's own codes, e.g. `Throttling.RateQuota`, pass through). */
export const CLIENT_ERROR_CODES = {
  /** The request certainly never reached the provider (refused, DNS, connect timeout, TLS). Safe to retry. */
  network: 'NetworkError',
  /** A submission was (maybe) sent but no answer came back: a task may exist and be billed. Do not resubmit blindly. */
  submitOutcomeUnknown: 'SubmitOutcomeUnknown',
  /** HTTP 2xx whose body is not the documented shape. */
  badResponse: 'BadResponse',
  /** The caller's AbortSignal fired. */
  aborted: 'Aborted',
  /** The client was misused (an undici argument error): a bug, not a provider problem. */
  clientBug: 'ClientError',
  /** The image file could not be read in full while it was sent, so the request ended short: nothing was created. */
  imageUnreadable: 'ImageUnreadable',
  /** The image file's content is not what was prepared (edited since): nothing was created, and sending again would not help. */
  imageChanged: 'ImageChanged',
} as const;

/** Which call failed: a POST creates a paid task, a GET is safe to repeat. */
export type RequestKind = 'submit' | 'query';

export type HeaderMap = Record<string, string | string[] | undefined>;

export interface ClassifyOptions {
  /** Secrets to scrub from any text that ends up in the error. */
  secrets?: ReadonlyArray<string | undefined>;
  /** Clock for HTTP-date `Retry-After` values. */
  now?: number;
}

/** How much of a raw response body is kept in an error message. */
export const MAX_BODY_IN_MESSAGE = 500;

/**
 * Provider codes with a known verdict, checked in order (AllocationQuota before the broader Throttling).
 * Codes are matched on the whole code or on a dotted prefix: `AccessDenied` covers `AccessDenied.Unpurchased`.
 */
const CODE_RULES: ReadonlyArray<{ code: string; retryable: boolean }> = [
  { code: 'Throttling.AllocationQuota', retryable: false },
  { code: 'AllocationQuota', retryable: false },
  { code: 'Throttling', retryable: true },
  { code: 'InternalError', retryable: true },
  { code: 'InvalidApiKey', retryable: false },
  { code: 'AccessDenied', retryable: false },
  { code: 'Model.AccessDenied', retryable: false },
  { code: 'Arrearage', retryable: false },
  { code: 'InvalidParameter', retryable: false },
  { code: 'DataInspectionFailed', retryable: false },
  { code: 'BadRequest', retryable: false },
  { code: 'InvalidURL', retryable: false },
  { code: 'ModelNotFound', retryable: false },
  { code: 'UnsupportedOperation', retryable: false },
];

/** The verdict for a provider error code, or undefined when the code is not one we know. */
export function isRetryableCode(code: string): boolean | undefined {
  const rule = CODE_RULES.find((r) => code === r.code || code.startsWith(`${r.code}.`));
  return rule?.retryable;
}

/** The verdict for an HTTP status when the body carries no code we know. */
export function isRetryableStatus(status: number): boolean {
  // 429 without a known code is most likely a rate limit (302.ai's own throttling); 408 means the
  // server gave up reading our request, so nothing was processed.
  return status === 429 || status === 408 || status >= 500;
}

/**
 * `Retry-After` (delay-seconds or HTTP-date) in milliseconds from `now`, or undefined if absent or unreadable.
 * A date in the past means "now" (0).
 */
export function parseRetryAfter(value: string | string[] | undefined, now: number): number | undefined {
  const raw = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!raw) return undefined;
  if (/^\d+(\.\d+)?$/.test(raw)) return Math.round(Number(raw) * 1000);
  if (!/[a-z]/i.test(raw)) return undefined; // e.g. "-5" or "1e3": neither seconds nor a date
  const at = Date.parse(raw);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/** Redacts secrets and anything that looks like a bearer token or `sk-` key, flattens whitespace, truncates. */
export function sanitizeBodyText(text: string, secrets: ReadonlyArray<string | undefined> = []): string {
  const scrubbed = redact(text, secrets)
    .replace(/(Bearer\s+)[^\s"',;]+/gi, '$1***')
    .replace(/\bsk-[A-Za-z0-9_-]{6,}/g, 'sk-***')
    .replace(/\s+/g, ' ')
    .trim();
  return scrubbed.length > MAX_BODY_IN_MESSAGE ? `${scrubbed.slice(0, MAX_BODY_IN_MESSAGE)}…` : scrubbed;
}

/** First value of a header; `name` in lower case, as undici and node:http deliver them. */
export function headerValue(headers: HeaderMap, name: string): string | undefined {
  const v = headers[name];
  const first = Array.isArray(v) ? v[0] : v;
  return first?.trim() || undefined;
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

/**
 * A non-2xx response as a ProviderError. DashScope bodies (`{code, message, request_id}`) are classified by
 * code, anything else (302.ai's own errors, HTML from a gateway, an empty body) by status, with the raw body
 * kept in the message. Unknown 4xx are fatal, 5xx retryable.
 */
export function classifyHttpError(status: number, body: string, headers: HeaderMap, opts: ClassifyOptions = {}): ProviderError {
  const secrets = opts.secrets ?? [];
  let parsed: Record<string, unknown> | undefined;
  try {
    parsed = asRecord(JSON.parse(body));
  } catch {
    parsed = undefined;
  }
  const rawCode = nonEmptyString(parsed?.code);
  const providerCode = rawCode === undefined ? undefined : sanitizeBodyText(rawCode, secrets);
  const providerMessage = nonEmptyString(parsed?.message);
  const rawRequestId = nonEmptyString(parsed?.request_id) ?? headerValue(headers, 'x-request-id');
  const requestId = rawRequestId === undefined ? undefined : sanitizeBodyText(rawRequestId, secrets);
  const retryAfterMs = parseRetryAfter(headers['retry-after'], opts.now ?? Date.now());

  const code = providerCode ?? `HTTP_${status}`;
  const retryable = (providerCode !== undefined ? isRetryableCode(providerCode) : undefined) ?? isRetryableStatus(status);

  const detail =
    providerCode !== undefined && providerMessage !== undefined
      ? sanitizeBodyText(providerMessage, secrets)
      : body.trim() === ''
        ? '(empty body)'
        : sanitizeBodyText(body, secrets);
  const suffix = requestId ? ` (request_id ${requestId})` : '';
  return new ProviderError({
    message: `Provider answered HTTP ${status} ${code}: ${detail}${suffix}`,
    code,
    retryable,
    httpStatus: status,
    retryAfterMs,
    requestId,
  });
}

/** Error codes that mean the connection was never established, so the request was certainly not delivered. */
const NOT_DELIVERED_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
  // TLS handshake failures happen before any request byte is written.
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
]);

/** Undici errors raised before dispatch because the client built a bad request. */
const CLIENT_BUG_CODES: ReadonlySet<string> = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED']);

export interface FailureContext {
  kind: RequestKind;
  /** The caller's signal fired (the thrown value is then the signal's reason, not a network error). */
  aborted: boolean;
  secrets?: ReadonlyArray<string | undefined>;
}

function describe(err: unknown): { code: string | undefined; syscall: string | undefined; message: string } {
  const rec = asRecord(err);
  const code = nonEmptyString(rec?.code);
  const syscall = nonEmptyString(rec?.syscall);
  const message = err instanceof Error ? err.message : String(err);
  return { code, syscall, message };
}

/**
 * A failure with no HTTP status (thrown by undici or the socket) as a ProviderError.
 * "Not delivered" failures are retryable for both kinds. Anything after the request may have been written
 * (reset, timeouts, abort mid-flight, unknown errors) is safe to retry for a query but leaves a submission's
 * outcome unknown: the task may exist and be billed, so it is not retryable.
 */
export function classifyRequestFailure(err: unknown, ctx: FailureContext): ProviderError {
  const { code, syscall, message } = describe(err);
  const what = sanitizeBodyText(code ? `${code}: ${message}` : message, ctx.secrets);
  const verb = ctx.kind === 'submit' ? 'Submitting the task' : 'Querying the task';

  if (!ctx.aborted && code !== undefined && CLIENT_BUG_CODES.has(code)) {
    return new ProviderError({ message: `${verb} failed before sending (client bug): ${what}`, code: CLIENT_ERROR_CODES.clientBug, retryable: false });
  }
  const notDelivered = !ctx.aborted && code !== undefined && (NOT_DELIVERED_CODES.has(code) || (code === 'ETIMEDOUT' && syscall === 'connect'));
  if (notDelivered) {
    return new ProviderError({ message: `${verb} failed, the request was not delivered: ${what}`, code: CLIENT_ERROR_CODES.network, retryable: true });
  }
  if (ctx.kind === 'submit') {
    return new ProviderError({
      message: `${verb} may have reached the provider but no answer was received (${ctx.aborted ? 'aborted' : what}); a task may exist and be billed`,
      code: CLIENT_ERROR_CODES.submitOutcomeUnknown,
      retryable: false,
      outcomeUnknown: true,
    });
  }
  if (ctx.aborted) {
    return new ProviderError({ message: `${verb} was aborted`, code: CLIENT_ERROR_CODES.aborted, retryable: true });
  }
  return new ProviderError({ message: `${verb} failed after sending: ${what}`, code: CLIENT_ERROR_CODES.network, retryable: true });
}

/** The caller aborted before anything was sent. */
export function abortedBeforeSend(kind: RequestKind): ProviderError {
  const verb = kind === 'submit' ? 'Submitting the task' : 'Querying the task';
  return new ProviderError({ message: `${verb} was aborted before sending`, code: CLIENT_ERROR_CODES.aborted, retryable: true });
}

/**
 * A 2xx response that is not the documented shape. For a query, asking again is safe. For a submission the
 * task may well exist (the provider said 200), so the outcome is unknown rather than retryable.
 */
export function badResponse(kind: RequestKind, detail: string, status: number, requestId: string | undefined, secrets?: ReadonlyArray<string | undefined>): ProviderError {
  const what = sanitizeBodyText(detail, secrets);
  if (requestId !== undefined) requestId = sanitizeBodyText(requestId, secrets);
  const suffix = requestId ? ` (request_id ${requestId})` : '';
  return new ProviderError({
    message:
      kind === 'submit'
        ? `Submit answered HTTP ${status} without a usable task id; a task may exist and be billed: ${what}${suffix}`
        : `Task query answered HTTP ${status} with an unexpected body: ${what}${suffix}`,
    code: CLIENT_ERROR_CODES.badResponse,
    retryable: kind === 'query',
    outcomeUnknown: kind === 'submit',
    httpStatus: status,
    requestId,
  });
}
