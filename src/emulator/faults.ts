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
  serverErrorStatus: 500 | 502 | 503;
  /** The next N accepted tasks end FAILED with failCode / failMessage. */
  failTasks: number;
  failCode: string;
  failMessage: string;
  /** While true, newly accepted tasks stay RUNNING forever. */
  stuckTasks: boolean;
}

export const DEFAULT_FAULTS: Readonly<EmulatorFaults> = {
  throttleSubmits: 0,
  retryAfterSeconds: 1,
  quotaSubmits: 0,
  serverErrorSubmits: 0,
  serverErrorQueries: 0,
  serverErrorStatus: 500,
  failTasks: 0,
  failCode: 'InternalError',
  failMessage: INTERNAL_ERROR_MESSAGE,
  stuckTasks: false,
};

type FaultKey = keyof EmulatorFaults;
const COUNTERS: ReadonlySet<FaultKey> = new Set<FaultKey>(['throttleSubmits', 'retryAfterSeconds', 'quotaSubmits', 'serverErrorSubmits', 'serverErrorQueries', 'failTasks']);

/** Checks untrusted JSON (the control endpoint) against the EmulatorFaults shape; returns an error message or the partial. */
export function parseFaults(value: unknown): Partial<EmulatorFaults> | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'faults must be a JSON object';
  for (const [key, v] of Object.entries(value)) {
    if (!Object.hasOwn(DEFAULT_FAULTS, key)) return `unknown fault "${key}"`;
    const ok = COUNTERS.has(key as FaultKey)
      ? Number.isInteger(v) && (v as number) >= 0
      : key === 'serverErrorStatus'
        ? v === 500 || v === 502 || v === 503
        : key === 'stuckTasks'
          ? typeof v === 'boolean'
          : typeof v === 'string' && v !== '';
    if (!ok) return `invalid value for "${key}": ${JSON.stringify(v)}`;
  }
  return value as Partial<EmulatorFaults>;
}

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

  /** Consumes at most one submit fault, checked in the order throttle, quota, server error. */
  takeSubmitFault(): ApiError | undefined {
    const f = this.faults;
    if (f.throttleSubmits > 0) {
      f.throttleSubmits--;
      return apiError(429, 'Throttling.RateQuota', 'Requests rate limit exceeded, please try again later.', {
        'Retry-After': String(f.retryAfterSeconds),
      });
    }
    if (f.quotaSubmits > 0) {
      f.quotaSubmits--;
      return apiError(429, 'Throttling.AllocationQuota', 'Allocated quota exceeded, please increase your quota limit.');
    }
    if (f.serverErrorSubmits > 0) {
      f.serverErrorSubmits--;
      return apiError(f.serverErrorStatus, 'InternalError', INTERNAL_ERROR_MESSAGE);
    }
    return undefined;
  }

  takeQueryFault(): ApiError | undefined {
    const f = this.faults;
    if (f.serverErrorQueries > 0) {
      f.serverErrorQueries--;
      return apiError(f.serverErrorStatus, 'InternalError', INTERNAL_ERROR_MESSAGE);
    }
    return undefined;
  }

  /** The outcome forced on a newly accepted task, if any (consumes one failTasks count). */
  takeTaskFault(): TaskOutcome | undefined {
    const f = this.faults;
    if (f.failTasks > 0) {
      f.failTasks--;
      return { kind: 'fail', code: f.failCode, message: f.failMessage };
    }
    return f.stuckTasks ? { kind: 'stuck' } : undefined;
  }
}
