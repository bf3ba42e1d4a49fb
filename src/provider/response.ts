/**
 * Pure parsing of successful (2xx) responses into the client's result types. Parsing is loose where the
 * provider varies (status case, `usage` shape) and strict where the pipeline depends on a field (task id, status).
 */
import { SUCCESS_STATUSES, TERMINAL_STATUSES, type TaskStatus } from './types';
import { badResponse } from './errors';

export interface SubmitResult {
  taskId: string;
  status: TaskStatus;
  requestId: string;
}

export interface TaskUsageSummary {
  /** Billed seconds of video (`video_duration`, or `duration` in the i2v shape). */
  videoSeconds?: number;
  videoCount?: number;
  /** Resolution tier from `SR` (e.g. 720). */
  resolutionTier?: number;
  /** Output frame size as reported, e.g. "832*480". */
  ratio?: string;
}

export interface TaskState {
  taskId: string;
  /** As returned, with case and whitespace normalised; may be a status outside the documented set. */
  status: TaskStatus;
  /** Status is terminal: stop polling. */
  done: boolean;
  succeeded: boolean;
  videoUrl?: string;
  /** FAILED details. */
  code?: string;
  message?: string;
  submitTime?: string;
  scheduledTime?: string;
  endTime?: string;
  actualPrompt?: string;
  usage: TaskUsageSummary;
  requestId: string;
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function str(value: unknown): string | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

/** A number, or the leading number of a string ("720", "720P", " 5 "); anything else is absent. */
function num(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)/.exec(value);
  return m ? Number(m[1]) : undefined;
}

/** Drops undefined fields so results compare and serialise cleanly. */
function compact<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as T;
}

export function normalizeStatus(raw: string): TaskStatus {
  return raw.trim().toUpperCase() as TaskStatus;
}

/** Every `usage` shape seen in the wild (§4.2); unknown fields are ignored, missing ones stay absent. */
export function parseUsage(raw: unknown): TaskUsageSummary {
  const u = asRecord(raw);
  if (!u) return {};
  return compact({
    videoSeconds: num(u.video_duration) ?? num(u.duration),
    videoCount: num(u.video_count),
    resolutionTier: num(u.SR),
    ratio: str(u.video_ratio),
  });
}

function parseJson(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    return undefined;
  }
}

interface ParseContext {
  status: number;
  /** `X-Request-ID` header, used when the body has no `request_id`. */
  headerRequestId: string | undefined;
  secrets?: ReadonlyArray<string | undefined>;
}

/** Body of a 2xx submit. Throws a `BadResponse` ProviderError (outcome unknown) when there is no task id. */
export function parseSubmitResponse(text: string, ctx: ParseContext): SubmitResult {
  const body = asRecord(parseJson(text)?.value);
  const requestId = str(body?.request_id) ?? ctx.headerRequestId;
  const output = asRecord(body?.output);
  const taskId = str(output?.task_id);
  const status = str(output?.task_status);
  if (!taskId || !status) {
    throw badResponse('submit', `expected output.task_id and output.task_status, got: ${text || '(empty body)'}`, ctx.status, requestId, ctx.secrets);
  }
  return { taskId, status: normalizeStatus(status), requestId: requestId ?? '' };
}

/** Body of a 2xx task query. Throws a `BadResponse` ProviderError (retryable) when there is no status. */
export function parseTaskResponse(text: string, taskId: string, ctx: ParseContext): TaskState {
  const body = asRecord(parseJson(text)?.value);
  const requestId = str(body?.request_id) ?? ctx.headerRequestId;
  const output = asRecord(body?.output);
  const rawStatus = str(output?.task_status);
  if (!output || !rawStatus) {
    throw badResponse('query', `expected output.task_status, got: ${text || '(empty body)'}`, ctx.status, requestId, ctx.secrets);
  }
  const status = normalizeStatus(rawStatus);
  return compact({
    // The id we asked about is authoritative if the body leaves it out.
    taskId: str(output.task_id) ?? taskId,
    status,
    done: TERMINAL_STATUSES.has(status),
    succeeded: SUCCESS_STATUSES.has(status),
    videoUrl: str(output.video_url),
    code: str(output.code),
    message: str(output.message),
    submitTime: str(output.submit_time),
    scheduledTime: str(output.scheduled_time),
    endTime: str(output.end_time),
    actualPrompt: str(output.actual_prompt),
    usage: parseUsage(body?.usage),
    requestId: requestId ?? '',
  });
}
