/**
 * HTTP client for the Wan image-to-video API (302.ai proxy or DashScope direct), on undici.
 * One attempt per call: it maps responses and classifies failures (./errors.ts) but never retries;
 * retrying is the caller's job (Temporal activity retry policies), guided by `ProviderError.retryable`
 * and `outcomeUnknown`.
 */
import type { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import type { ProviderConfig } from '../config';
import { ConfigError, ProviderError } from '../errors';
import { ASYNC_HEADER, SUBMIT_PATH, taskPath } from './types';
import { ImageReadError, openSubmitBody, type SubmitInput } from './body';
import { CLIENT_ERROR_CODES, abortedBeforeSend, classifyHttpError, classifyRequestFailure, headerValue, type RequestKind } from './errors';
import { parseSubmitResponse, parseTaskResponse, type SubmitResult, type TaskState } from './response';

export type { SubmitResult, TaskState, TaskUsageSummary } from './response';
export { CLIENT_ERROR_CODES } from './errors';
export { buildSubmitBody, toDataUrl, type SubmitImage, type SubmitInput } from './body';

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

/**
 * The body ended short of its announced length, so no server could have read a whole request from it (a proxy
 * that streams it on passes on the same short body): nothing was created.
 */
function imageNotSent(err: ImageReadError): ProviderError {
  const message = `Submitting the task failed before the request was complete, so nothing was submitted: ${err.message}`;
  return err.changed
    ? new ProviderError({ message, code: CLIENT_ERROR_CODES.imageChanged, retryable: false })
    : new ProviderError({ message, code: CLIENT_ERROR_CODES.imageUnreadable, retryable: true });
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

  async function send(kind: RequestKind, path: string, init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string | Readable }, signal: AbortSignal | undefined): Promise<RawResponse> {
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
      if (err instanceof ImageReadError) throw imageNotSent(err);
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
      const body = await openSubmitBody(input);
      const headers: Record<string, string> = { authorization: auth, 'content-type': 'application/json', 'content-length': String(body.length) };
      if (config.asyncHeader) headers[ASYNC_HEADER.toLowerCase()] = 'enable';
      let res: RawResponse;
      try {
        res = await send('submit', SUBMIT_PATH, { method: 'POST', headers, body: body.body }, opts.signal);
      } finally {
        await body.close();
      }
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
