/**
 * Fault injection switches. Counters are consumed one per matching request, so a test can say
 * "the next two submits are throttled" and then watch the client recover.
 */
import { apiError, INTERNAL_ERROR_MESSAGE, type ApiError } from './apiError';
import type { TaskOutcome } from './tasks';

export interface EmulatorFaults {
  /** The next N submits get HTTP 429 `Throttling.RateQuota` with `Retry-After: retryAfterSeconds`. */
  throttleSubmits: number;
  retryAfterSeconds: number;
  /** The next N submits get HTTP 429 `Throttling.AllocationQuota` (quota used up: fatal). */
  quotaSubmits: number;
  /** The next N submits get HTTP `serverErrorStatus` `InternalError`. */
  serverErrorSubmits: number;
  /** The next N task GETs get HTTP `serverErrorStatus` `InternalError`. */
  serverErrorQueries: number;
  /** 502 and 504 are what a gateway in front of the service answers when it stops waiting. */
  serverErrorStatus: 500 | 502 | 503 | 504;
  /** The next N submits: the connection is reset as soon as the request arrives, before its body is read. Nothing is created or billed. */
  resetSubmitsBeforeRead: number;
  /** The next N submits that would be accepted: the task is created and billed, then the connection is reset instead of answering. */
  resetSubmitsAfterAccept: number;
  /** The next N task GETs: the connection is reset as soon as the request arrives. */
  resetQueries: number;
  /** The next N task GETs answer HTTP 200 `UNKNOWN`, as the service does for an id it does not know. */
  unknownTasks: number;
  /** The next N accepted tasks end FAILED with failCode / failMessage. */
  failTasks: number;
  failCode: string;
  failMessage: string;
  /** While true, newly accepted tasks stay RUNNING forever. */
  stuckTasks: boolean;
  /** The next N video GETs answer 403 AccessDenied "Request has expired." (OSS XML), whatever the URL's signature says. */
  expireVideoUrls: number;
  /** The next N video GETs send the full Content-Length, then half of the body, then close the connection. */
  truncateDownloads: number;
  /** Video bodies are sent at this many bytes per second; 0 sends them as fast as possible. */
  downloadBytesPerSecond: number;
}

export const DEFAULT_FAULTS: Readonly<EmulatorFaults> = {
  throttleSubmits: 0,
  retryAfterSeconds: 1,
  quotaSubmits: 0,
  serverErrorSubmits: 0,
  serverErrorQueries: 0,
  serverErrorStatus: 500,
  resetSubmitsBeforeRead: 0,
  resetSubmitsAfterAccept: 0,
  resetQueries: 0,
  unknownTasks: 0,
  failTasks: 0,
  failCode: 'InternalError',
  failMessage: INTERNAL_ERROR_MESSAGE,
  stuckTasks: false,
  expireVideoUrls: 0,
  truncateDownloads: 0,
  downloadBytesPerSecond: 0,
};

type FaultKey = keyof EmulatorFaults;
/** The "next N requests" switches. */
type Counter =
  | 'throttleSubmits' | 'quotaSubmits' | 'serverErrorSubmits' | 'serverErrorQueries' | 'resetSubmitsBeforeRead' | 'resetSubmitsAfterAccept'
  | 'resetQueries' | 'unknownTasks' | 'failTasks' | 'expireVideoUrls' | 'truncateDownloads';

const SERVER_ERROR_STATUSES: ReadonlySet<unknown> = new Set([500, 502, 503, 504]);
const STRINGS: ReadonlySet<FaultKey> = new Set<FaultKey>(['failCode', 'failMessage']);

/** Checks untrusted JSON (the control endpoint) against the EmulatorFaults shape; returns an error message or the partial. */
export function parseFaults(value: unknown): Partial<EmulatorFaults> | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'faults must be a JSON object';
  for (const [key, v] of Object.entries(value)) {
    if (!Object.hasOwn(DEFAULT_FAULTS, key)) return `unknown fault "${key}"`;
    const ok =
      key === 'serverErrorStatus'
        ? SERVER_ERROR_STATUSES.has(v)
        : key === 'stuckTasks'
          ? typeof v === 'boolean'
          : STRINGS.has(key as FaultKey)
            ? typeof v === 'string' && v !== ''
            : Number.isInteger(v) && (v as number) >= 0;
    if (!ok) return `invalid value for "${key}": ${JSON.stringify(v)}`;
  }
  return value as Partial<EmulatorFaults>;
}

/** What an injected fault does to a task query. */
export type QueryFault = { kind: 'reset' } | { kind: 'error'; error: ApiError } | { kind: 'unknown' };

/** What an injected fault does to a video download. */
export type DownloadFault = 'expired' | 'truncate';

export class FaultSwitches {
  private faults: EmulatorFaults;

  constructor(initial: Partial<EmulatorFaults> = {}) {
    this.faults = { ...DEFAULT_FAULTS, ...initial };
  }

  set(partial: Partial<EmulatorFaults>): void {
    this.faults = { ...this.faults, ...partial };
  }

  snapshot(): EmulatorFaults {
    return { ...this.faults };
  }

  /** True (once per count) when the submit that just arrived must be reset before its body is read. */
  takeResetBeforeRead(): boolean {
    return this.take('resetSubmitsBeforeRead');
  }

  /** True (once per count) when the submission just accepted must go unanswered (connection reset). */
  takeResetAfterAccept(): boolean {
    return this.take('resetSubmitsAfterAccept');
  }

  /** Consumes at most one submit fault, checked in the order throttle, quota, server error. */
  takeSubmitFault(): ApiError | undefined {
    const f = this.faults;
    if (this.take('throttleSubmits')) {
      return apiError(429, 'Throttling.RateQuota', 'Requests rate limit exceeded, please try again later.', {
        'Retry-After': String(f.retryAfterSeconds),
      });
    }
    if (this.take('quotaSubmits')) {
      return apiError(429, 'Throttling.AllocationQuota', 'Allocated quota exceeded, please increase your quota limit.');
    }
    if (this.take('serverErrorSubmits')) return apiError(f.serverErrorStatus, 'InternalError', INTERNAL_ERROR_MESSAGE);
    return undefined;
  }

  /** Consumes at most one query fault, checked in the order reset, server error, UNKNOWN. */
  takeQueryFault(): QueryFault | undefined {
    if (this.take('resetQueries')) return { kind: 'reset' };
    if (this.take('serverErrorQueries')) return { kind: 'error', error: apiError(this.faults.serverErrorStatus, 'InternalError', INTERNAL_ERROR_MESSAGE) };
    if (this.take('unknownTasks')) return { kind: 'unknown' };
    return undefined;
  }

  /** The outcome forced on a newly accepted task, if any (consumes one failTasks count). */
  takeTaskFault(): TaskOutcome | undefined {
    const f = this.faults;
    if (this.take('failTasks')) return { kind: 'fail', code: f.failCode, message: f.failMessage };
    return f.stuckTasks ? { kind: 'stuck' } : undefined;
  }

  /** Consumes at most one download fault, checked in the order expired, truncate. */
  takeDownloadFault(): DownloadFault | undefined {
    if (this.take('expireVideoUrls')) return 'expired';
    if (this.take('truncateDownloads')) return 'truncate';
    return undefined;
  }

  /** Bytes per second for video bodies; 0 means unthrottled. */
  downloadRate(): number {
    return this.faults.downloadBytesPerSecond;
  }

  private take(counter: Counter): boolean {
    if (this.faults[counter] <= 0) return false;
    this.faults[counter]--;
    return true;
  }
}
