/**
 * HTTP client for the Wan image-to-video API (302.ai proxy or DashScope direct), on undici.
 * One attempt per call: it maps responses and classifies failures (./errors.ts) but never retries;
 * retrying is the caller's job (Temporal activity retry policies), guided by `ProviderError.retryable`
 * and `outcomeUnknown`.
 */
import { Agent, request, type Dispatcher } from 'undici';
import type { ProviderConfig, GenerationParams } from '../config';
import { ConfigError, ProviderError } from '../errors';
import { ASYNC_HEADER, SUBMIT_PATH, taskPath, type SubmitRequestBody } from './types';
import { CLIENT_ERROR_CODES, abortedBeforeSend, classifyHttpError, classifyRequestFailure, headerValue, type RequestKind } from './errors';
import { parseSubmitResponse, parseTaskResponse, type SubmitResult, type TaskState } from './response';

export type { SubmitResult, TaskState, TaskUsageSummary } from './response';
export { CLIENT_ERROR_CODES } from './errors';

export interface SubmitInput {
  /** `data:image/jpeg;base64,...`, built by the caller from the prepared file (see toDataUrl). */
  imageDataUrl: string;
  prompt: string;
  params: GenerationParams;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface ProviderClient {
  /** Creates a (paid) task. On `outcomeUnknown` errors the task may exist: do not resubmit blindly. */
  submit(input: SubmitInput, opts?: CallOptions): Promise<SubmitResult>;
  getTask(taskId: string, opts?: CallOptions): Promise<TaskState>;
}

export interface ProviderHttpClient extends ProviderClient {
  /** Closes the client's own connection pool (a no-op when a dispatcher was injected). */
  close(): Promise<void>;
}

/** Largest response body read; task responses are a few hundred bytes. */
const MAX_RESPONSE_BYTES = 1024 * 1024;
/** Undici's default connect timeout, capped by the request timeout. */
const CONNECT_TIMEOUT_MS = 10_000;

export function toDataUrl(mime: string, bytes: Buffer): string {
  return `data:${mime.trim().toLowerCase()};base64,${bytes.toString('base64')}`;
}

/** The documented request body (§2): `duration` only when set, so a model's default applies otherwise. */
export function buildSubmitBody(input: SubmitInput): SubmitRequestBody {
  const { params } = input;
  return {
    model: params.model,
    input: { prompt: input.prompt, img_url: input.imageDataUrl },
    parameters: {
      resolution: params.resolution,
      prompt_extend: params.promptExtend,
      ...(params.duration !== undefined ? { duration: params.duration } : {}),
    },
  };
}

function checkBaseUrl(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new ConfigError(`Provider base URL "${baseUrl}" is not a URL.`, 'Use e.g. https://api.302.ai/aliyun/api/v1.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`Provider base URL "${baseUrl}" must be http(s).`, 'Use e.g. https://api.302.ai/aliyun/api/v1.');
  }
  return baseUrl.replace(/\/+$/, '');
}

interface RawResponse {
  status: number;
  headers: Dispatcher.ResponseData['headers'];
  text: string;
}

async function readText(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    chunks.push(buf);
    size += buf.length;
    if (size > MAX_RESPONSE_BYTES) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}

const GATEWAY_TIMEOUT_STATUSES: ReadonlySet<number> = new Set([502, 504]);

export function createProviderClient(config: ProviderConfig, deps: { dispatcher?: Dispatcher } = {}): ProviderHttpClient {
  const baseUrl = checkBaseUrl(config.baseUrl);
  const timeoutMs = config.requestTimeoutMs;
  const ownAgent = deps.dispatcher
    ? undefined
    : new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connect: { timeout: Math.min(CONNECT_TIMEOUT_MS, timeoutMs) } });
  const dispatcher: Dispatcher = deps.dispatcher ?? (ownAgent as Agent);
  const secrets = [config.apiKey];
  const auth = `Bearer ${config.apiKey}`;

  async function send(kind: RequestKind, path: string, init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string }, signal: AbortSignal | undefined): Promise<RawResponse> {
    if (signal?.aborted) throw abortedBeforeSend(kind);
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${baseUrl}${path}`, {
        method: init.method,
        headers: init.headers,
        body: init.body,
        signal,
        dispatcher,
        // Per request as well, so an injected dispatcher honours the configured timeout too.
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    } catch (err) {
      throw classifyRequestFailure(err, { kind, aborted: signal?.aborted ?? false, secrets });
    }
    const ok = res.statusCode >= 200 && res.statusCode < 300;
    try {
      return { status: res.statusCode, headers: res.headers, text: await readText(res.body) };
    } catch (err) {
      // A 2xx cut short leaves the outcome unknown; an error status already says what happened.
      if (ok) throw classifyRequestFailure(err, { kind, aborted: signal?.aborted ?? false, secrets });
      return { status: res.statusCode, headers: res.headers, text: '' };
    }
  }

  function failIfNotOk(res: RawResponse, kind: RequestKind): void {
    if (res.status >= 200 && res.status < 300) return;
    const err = classifyHttpError(res.status, res.text, res.headers, { secrets });
    // A gateway error on a POST means a proxy stopped waiting, not that the provider refused: the task may
    // exist upstream (and be billed), so it must not be resubmitted blindly.
    if (kind === 'submit' && GATEWAY_TIMEOUT_STATUSES.has(res.status)) {
      throw new ProviderError({ message: err.message, code: err.code, retryable: false, httpStatus: err.httpStatus, requestId: err.requestId, outcomeUnknown: true });
    }
    throw err;
  }

  return {
    async submit(input, opts = {}) {
      const headers: Record<string, string> = { authorization: auth, 'content-type': 'application/json' };
      if (config.asyncHeader) headers[ASYNC_HEADER.toLowerCase()] = 'enable';
      const res = await send('submit', SUBMIT_PATH, { method: 'POST', headers, body: JSON.stringify(buildSubmitBody(input)) }, opts.signal);
      failIfNotOk(res, 'submit');
      return parseSubmitResponse(res.text, { status: res.status, headerRequestId: headerValue(res.headers, 'x-request-id'), secrets });
    },

    async getTask(taskId, opts = {}) {
      // An empty id would hit the task *list* endpoint and look like a malformed answer.
      if (taskId.trim() === '') throw new ProviderError({ message: 'getTask needs a task id', code: CLIENT_ERROR_CODES.clientBug, retryable: false });
      const res = await send('query', taskPath(taskId), { method: 'GET', headers: { authorization: auth } }, opts.signal);
      failIfNotOk(res, 'query');
      return parseTaskResponse(res.text, taskId, { status: res.status, headerRequestId: headerValue(res.headers, 'x-request-id'), secrets });
    },

    async close() {
      await ownAgent?.close();
    },
  };
}
