/**
 * Wire types of the Wan image-to-video API (DashScope, also proxied by 302.ai), shared by the provider
 * client and the emulator. Types and constants only: no logic, so a bug in one side is caught by the other.
 * Source: ../shared/reference/video-api.md.
 */

export const SUBMIT_PATH = '/services/aigc/video-generation/video-synthesis';
export const taskPath = (taskId: string): string => `/tasks/${encodeURIComponent(taskId)}`;

export type TaskStatus = 'PENDING' | 'RUNNING' | 'SUSPENDED' | 'SUCCEEDED' | 'SUCCESS' | 'FAILED' | 'CANCELED' | 'UNKNOWN';

/** `SUCCESS` is not what the real API returns, but third-party docs claim it; accept it as success. */
export const SUCCESS_STATUSES: ReadonlySet<string> = new Set(['SUCCEEDED', 'SUCCESS']);
export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(['SUCCEEDED', 'SUCCESS', 'FAILED', 'CANCELED', 'UNKNOWN']);

export type Resolution = '480P' | '720P' | '1080P';

export interface SubmitRequestBody {
  model: string;
  input: {
    prompt?: string;
    img_url: string;
    negative_prompt?: string;
  };
  parameters?: {
    resolution?: Resolution;
    duration?: number;
    prompt_extend?: boolean;
    seed?: number;
    watermark?: boolean;
  };
}

export interface SubmitResponseBody {
  output: { task_id: string; task_status: TaskStatus };
  request_id: string;
}

/** Usage varies by model and version: every field is optional. */
export interface TaskUsage {
  SR?: number;
  duration?: number;
  video_duration?: number;
  video_count?: number;
  video_ratio?: string;
}

export interface TaskResponseBody {
  request_id: string;
  output: {
    task_id: string;
    task_status: TaskStatus;
    submit_time?: string;
    scheduled_time?: string;
    end_time?: string;
    video_url?: string;
    orig_prompt?: string;
    actual_prompt?: string;
    code?: string;
    message?: string;
  };
  usage?: TaskUsage;
}

/** Non-200 responses carry the error at top level, without `output`. */
export interface ErrorResponseBody {
  code: string;
  message: string;
  request_id: string;
}

/** Header required by DashScope direct for async tasks (302.ai adds it upstream). */
export const ASYNC_HEADER = 'X-DashScope-Async';
