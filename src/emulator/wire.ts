/**
 * Builds the JSON bodies of the API (reference §4, §5.1) from emulator state, using the shared wire types.
 */
import type { ErrorResponseBody, SubmitResponseBody, TaskResponseBody } from '../provider/types';
import type { ApiError } from './apiError';
import { TIER_SR } from './models';
import type { TaskView } from './tasks';

const UTC_PLUS_8_MS = 8 * 60 * 60 * 1000;

/** "YYYY-MM-DD HH:MM:SS.mmm" in Beijing time without a zone, like the real service. */
export function formatProviderTime(ms: number): string {
  return new Date(ms + UTC_PLUS_8_MS).toISOString().replace('T', ' ').slice(0, 23);
}

export function submitResponse(taskId: string, requestId: string): SubmitResponseBody {
  return { output: { task_id: taskId, task_status: 'PENDING' }, request_id: requestId };
}

export function errorResponse(error: ApiError, requestId: string): ErrorResponseBody {
  return { code: error.code, message: error.message, request_id: requestId };
}

export function taskResponse(
  taskId: string,
  view: TaskView,
  requestId: string,
  videoUrl: (endAt: number) => string,
): TaskResponseBody {
  if (view.status === 'UNKNOWN') return { request_id: requestId, output: { task_id: taskId, task_status: 'UNKNOWN' } };
  const { task } = view;
  const output: TaskResponseBody['output'] = {
    task_id: taskId,
    task_status: view.status,
    submit_time: formatProviderTime(task.submittedAt),
  };
  if (view.status === 'PENDING') return { request_id: requestId, output };
  output.scheduled_time = formatProviderTime(task.scheduledAt);
  switch (view.status) {
    case 'RUNNING':
      return { request_id: requestId, output };
    case 'FAILED':
      return {
        request_id: requestId,
        output: { ...output, end_time: formatProviderTime(view.endAt), code: view.code, message: view.message },
      };
    case 'SUCCEEDED':
      return {
        request_id: requestId,
        output: {
          ...output,
          end_time: formatProviderTime(view.endAt),
          video_url: videoUrl(view.endAt),
          orig_prompt: task.prompt,
          actual_prompt: task.actualPrompt,
        },
        usage: { video_duration: task.videoSeconds, video_count: 1, SR: TIER_SR[task.resolution] },
      };
  }
}

/**
 * An OSS error document, as the object store serving signed video URLs answers (XML, not the API's JSON):
 * `<Error><Code>AccessDenied</Code><Message>Request has expired.</Message>...</Error>`.
 */
export function ossErrorXml(code: string, message: string, requestId: string, extra: Readonly<Record<string, string>> = {}): string {
  const fields: Record<string, string> = { Code: code, Message: message, RequestId: requestId, HostId: 'dashscope-result-emulator.oss.local', ...extra };
  const body = Object.entries(fields).map(([k, v]) => `  <${k}>${escapeXml(v)}</${k}>`).join('\n');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n${body}\n</Error>\n`;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}
