/**
 * HTTP routing of the emulator: a local stand-in for the Wan image-to-video API (DashScope, 302.ai).
 *
 * Endpoints (API paths also answer under `/aliyun/api/v1`, like 302.ai):
 *   POST /api/v1/services/aigc/video-generation/video-synthesis   submit (Bearer auth)
 *   GET  /api/v1/tasks/{id}                                        query (Bearer auth)
 *   GET|HEAD /videos/{id}.mp4?Expires=..&OSSAccessKeyId=..&Signature=..   signed video download, single byte ranges
 *   GET  /__emulator/health, GET /__emulator/ledger, POST /__emulator/faults   control (no auth)
 *
 * Submit checks, in order: an injected reset on arrival, Bearer key (401), async header when required (403),
 * JSON (400), injected faults (429 / 5xx), request validation (see validate.ts), prompt directives; then the task
 * is accepted (billed) and answered, unless an injected reset cuts the connection instead.
 * Task queries can be reset, fail with 5xx or answer UNKNOWN by injected fault; video downloads answer like OSS
 * (XML error documents, 403 for a bad or expired signature) and can be refused as expired, cut off half-way or
 * slowed down. See faults.ts.
 *
 * Prompt directives script one shot's fate from its prompt text, for deterministic end-to-end tests:
 *   [emulator:reject=CODE]  the submit fails with HTTP 400 and error code CODE (e.g. DataInspectionFailed);
 *                           nothing is accepted or billed.
 *   [emulator:fail=CODE]    the task is accepted, runs, then ends FAILED with output.code CODE.
 *   [emulator:stuck]        the task is accepted and stays RUNNING forever (until its TTL makes it UNKNOWN).
 * A task governed by a directive does not consume the failTasks fault counter.
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { ASYNC_HEADER, SUBMIT_PATH } from '../provider/types';
import { apiError, INTERNAL_ERROR_MESSAGE, invalidParameter, type ApiError } from './apiError';
import { directiveMessage, parseDirectives, type PromptDirectives } from './directives';
import { parseFaults, type FaultSwitches } from './faults';
import { bearerToken, parseRange, readBody, sendJson, writeFileRange } from './http';
import type { LedgerBook } from './ledger';
import { outputFrameSize, RenderFailure, type Renderer } from './render';
import type { VideoUrlSigner } from './signing';
import type { TaskOutcome, TaskStore } from './tasks';
import { MAX_DATA_URL_CHARS, validateSubmission, type ValidSubmission } from './validate';
import { errorResponse, ossErrorXml, submitResponse, taskResponse } from './wire';

export interface ServerContext {
  apiKey: string;
  requireAsyncHeader: boolean;
  /** Overrides the requested duration for every rendered video. */
  videoSeconds: number | undefined;
  fps: number;
  clock: () => number;
  tasks: TaskStore;
  faults: FaultSwitches;
  ledger: LedgerBook;
  renderer: Renderer;
  signer: VideoUrlSigner;
  /** `http://host:port`, known once the server listens. */
  origin: () => string;
  log: ((line: string) => void) | undefined;
}

const API_PREFIXES = ['/api/v1', '/aliyun/api/v1'];
/** Room for the largest accepted data URL plus the rest of the JSON. */
const MAX_SUBMIT_BODY_BYTES = MAX_DATA_URL_CHARS + 64 * 1024;
const MAX_CONTROL_BODY_BYTES = 64 * 1024;

export function createRequestListener(ctx: ServerContext): RequestListener {
  return (req, res) => {
    const started = Date.now();
    const url = requestUrl(req);
    // Path only: the query may carry a signature, and headers (Authorization) and bodies (images) are never logged.
    res.once('finish', () => ctx.log?.(`${req.method} ${url.pathname} ${res.statusCode} ${Date.now() - started}ms`));
    route(ctx, req, res, url).catch((err: unknown) => {
      ctx.log?.(`internal error on ${req.method} ${url.pathname}: ${(err as Error).message}`);
      if (res.headersSent) res.destroy();
      else sendError(res, apiError(500, 'InternalError', INTERNAL_ERROR_MESSAGE));
    });
  };
}

async function route(ctx: ServerContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const method = req.method ?? '';
  const prefix = API_PREFIXES.find((p) => url.pathname.startsWith(`${p}/`));
  const apiPath = prefix === undefined ? undefined : url.pathname.slice(prefix.length);
  if (apiPath !== undefined) {
    if (method === 'POST' && apiPath === SUBMIT_PATH) return submit(ctx, req, res);
    const taskId = decodeSegment(/^\/tasks\/([^/]+)$/.exec(apiPath)?.[1]);
    if (method === 'GET' && taskId !== undefined) return queryTask(ctx, req, res, taskId);
  }
  const videoId = decodeSegment(/^\/videos\/([^/]+)\.mp4$/.exec(url.pathname)?.[1]);
  if ((method === 'GET' || method === 'HEAD') && videoId !== undefined) return serveVideo(ctx, req, res, url, videoId);
  if (method === 'GET' && url.pathname === '/__emulator/health') return sendJson(res, 200, { ok: true });
  if (method === 'GET' && url.pathname === '/__emulator/ledger') return sendJson(res, 200, ctx.ledger.snapshot());
  if (method === 'POST' && url.pathname === '/__emulator/faults') return updateFaults(ctx, req, res);
  sendError(res, apiError(404, 'NotFound', `No such endpoint: ${method} ${url.pathname}.`));
}

async function submit(ctx: ServerContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  ctx.ledger.countPost();
  if (ctx.faults.takeResetBeforeRead()) return resetConnection(ctx, req, 'before reading the request');
  const denied = checkAuth(ctx, req) ?? checkAsyncHeader(ctx, req);
  if (denied) return sendError(res, denied);

  const { body, tooLarge } = await readBody(req, MAX_SUBMIT_BODY_BYTES);
  if (tooLarge) return sendError(res, invalidParameter('The request body is too large (the image data URL may be at most 10 MB).'));
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return sendError(res, invalidParameter('The request body is not valid JSON.'));
  }

  const fault = ctx.faults.takeSubmitFault();
  if (fault) return sendError(res, fault);

  const result = await validateSubmission(json);
  if (!result.ok) return sendError(res, result.error);
  const directives = parseDirectives(result.submission.prompt);
  if (directives.reject) return sendError(res, apiError(400, directives.reject, directiveMessage(directives.reject)));

  const taskId = await accept(ctx, result.submission, directives);
  if (ctx.faults.takeResetAfterAccept()) return resetConnection(ctx, req, `after accepting task ${taskId}`);
  const requestId = randomUUID();
  sendJson(res, 200, submitResponse(taskId, requestId), { 'X-Request-ID': requestId });
}

/** Records an accepted (billed) submission, creates its task and starts rendering its video. */
async function accept(ctx: ServerContext, submission: ValidSubmission, directives: PromptDirectives): Promise<string> {
  const taskId = randomUUID();
  const { image } = submission;
  const outcome = chooseOutcome(ctx, directives);
  const videoSeconds = ctx.videoSeconds ?? submission.duration;

  // Only tasks that will succeed need a video; staged before the ledger write so a failed write leaves no task.
  const imagePath = outcome.kind === 'succeed' ? await ctx.renderer.stage(taskId, image.bytes, image.mime) : undefined;
  try {
    await ctx.ledger.recordSubmission({
      taskId,
      at: new Date(ctx.clock()).toISOString(),
      model: submission.model,
      prompt: submission.prompt,
      imageSha256: image.sha256,
      imageBytes: image.bytes.length,
      mime: image.mime,
      width: image.width,
      height: image.height,
      resolution: submission.resolution,
    });
  } catch (err) {
    if (imagePath) await rm(imagePath, { force: true });
    throw err;
  }

  ctx.tasks.create({ id: taskId, outcome, prompt: submission.prompt, actualPrompt: submission.actualPrompt, resolution: submission.resolution, videoSeconds });
  if (imagePath) {
    ctx.renderer
      .render({ taskId, imagePath, mime: image.mime, size: outputFrameSize(image.width, image.height, submission.resolution), seconds: videoSeconds, fps: ctx.fps })
      .then(
        (video) => ctx.tasks.renderDone(taskId, video),
        (err: unknown) => {
          const failure = err instanceof RenderFailure ? err : new RenderFailure('InternalError', String(err));
          ctx.log?.(`render of task ${taskId} failed: ${failure.message}`);
          ctx.tasks.renderFailed(taskId, failure.code, failure.code === 'InvalidParameter' ? 'The image could not be decoded.' : INTERNAL_ERROR_MESSAGE);
        },
      );
  }
  return taskId;
}

/** Directives decide first; only tasks without one consume the failTasks / stuckTasks faults, keeping both predictable. */
function chooseOutcome(ctx: ServerContext, directives: PromptDirectives): TaskOutcome {
  if (directives.stuck) return { kind: 'stuck' };
  if (directives.fail) return { kind: 'fail', code: directives.fail, message: directiveMessage(directives.fail) };
  return ctx.faults.takeTaskFault() ?? { kind: 'succeed' };
}

function queryTask(ctx: ServerContext, req: IncomingMessage, res: ServerResponse, taskId: string): void {
  ctx.ledger.countGet();
  const denied = checkAuth(ctx, req);
  if (denied) return sendError(res, denied);
  const fault = ctx.faults.takeQueryFault();
  if (fault?.kind === 'reset') return resetConnection(ctx, req, 'instead of answering');
  if (fault?.kind === 'error') return sendError(res, fault.error);
  const view = fault?.kind === 'unknown' ? { status: 'UNKNOWN' as const } : ctx.tasks.view(taskId);
  const requestId = randomUUID();
  const body = taskResponse(taskId, view, requestId, (endAt) => ctx.signer.url(ctx.origin(), taskId, endAt));
  sendJson(res, 200, body, { 'X-Request-ID': requestId });
}

async function serveVideo(ctx: ServerContext, req: IncomingMessage, res: ServerResponse, url: URL, taskId: string): Promise<void> {
  const isGet = req.method === 'GET';
  if (isGet) ctx.ledger.countDownload();
  const render = ctx.tasks.get(taskId)?.render;
  if (render?.state !== 'done') return sendOssError(res, 404, 'NoSuchKey', 'The specified key does not exist.');
  const fault = isGet ? ctx.faults.takeDownloadFault() : undefined;
  const signature = fault === 'expired' ? 'expired' : ctx.signer.check(taskId, url.searchParams, ctx.clock());
  if (signature === 'invalid') return sendOssError(res, 403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
  if (signature === 'expired') {
    return sendOssError(res, 403, 'AccessDenied', 'Request has expired.', { ServerTime: new Date(ctx.clock()).toISOString().replace(/\.\d+Z$/, 'Z') });
  }

  const { path, bytes: size } = render.video;
  const headers = { 'Content-Type': 'video/mp4', 'Accept-Ranges': 'bytes' };
  const range = parseRange(req.headers.range, size);
  if (range.kind === 'unsatisfiable') {
    res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` });
    res.end();
    return;
  }
  const [start, end] = range.kind === 'partial' ? [range.start, range.end] : [0, size - 1];
  res.writeHead(range.kind === 'partial' ? 206 : 200, {
    ...headers,
    'Content-Length': String(end - start + 1),
    ...(range.kind === 'partial' && { 'Content-Range': `bytes ${start}-${end}/${size}` }),
  });
  if (!isGet) {
    res.end();
    return;
  }
  // A truncated transfer sends half of what its Content-Length promised, then closes the connection.
  const last = fault === 'truncate' ? start + Math.floor((end - start + 1) / 2) - 1 : end;
  const complete = await writeFileRange(res, path, start, last, ctx.faults.downloadRate());
  if (!complete) return; // the client went away mid-download
  if (fault === 'truncate') {
    ctx.log?.(`GET ${url.pathname} cut off after ${last - start + 1} of ${end - start + 1} bytes (injected fault)`);
    res.destroy();
    return;
  }
  res.end();
}

async function updateFaults(ctx: ServerContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { body, tooLarge } = await readBody(req, MAX_CONTROL_BODY_BYTES);
  let parsed: unknown;
  try {
    parsed = tooLarge ? undefined : JSON.parse(body.toString('utf8'));
  } catch {
    return sendError(res, invalidParameter('The request body is not valid JSON.'));
  }
  const faults = parseFaults(parsed);
  if (typeof faults === 'string') return sendError(res, invalidParameter(faults));
  ctx.faults.set(faults);
  sendJson(res, 200, ctx.faults.snapshot());
}

function checkAuth(ctx: ServerContext, req: IncomingMessage): ApiError | undefined {
  const token = bearerToken(req);
  if (token === undefined) return apiError(401, 'InvalidApiKey', 'No API-key provided.');
  if (token !== ctx.apiKey) return apiError(401, 'InvalidApiKey', 'Invalid API-key provided.');
  return undefined;
}

/** DashScope direct refuses synchronous calls to async-only models (reference §0). */
function checkAsyncHeader(ctx: ServerContext, req: IncomingMessage): ApiError | undefined {
  if (!ctx.requireAsyncHeader || req.headers[ASYNC_HEADER.toLowerCase()] === 'enable') return undefined;
  return apiError(403, 'AccessDenied', 'current user api does not support synchronous calls');
}

/** Cuts the connection without an answer (TCP RST), as a crashed proxy or a network fault would. */
function resetConnection(ctx: ServerContext, req: IncomingMessage, when: string): void {
  ctx.log?.(`${req.method} ${requestUrl(req).pathname} connection reset ${when} (injected fault)`);
  req.socket.resetAndDestroy();
}

/** The object store's error document (XML), for video URLs. */
function sendOssError(res: ServerResponse, status: number, code: string, message: string, extra: Record<string, string> = {}): void {
  const requestId = randomUUID().replace(/-/g, '').slice(0, 24).toUpperCase();
  const xml = ossErrorXml(code, message, requestId, extra);
  res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(xml), 'x-oss-request-id': requestId });
  res.end(xml);
}

function sendError(res: ServerResponse, error: ApiError): void {
  const requestId = randomUUID();
  sendJson(res, error.status, errorResponse(error, requestId), { ...error.headers, 'X-Request-ID': requestId });
}

/** The request target as a URL; one that does not parse routes nowhere (404) rather than throwing. */
function requestUrl(req: IncomingMessage): URL {
  const base = 'http://emulator.invalid';
  try {
    return new URL(req.url ?? '/', base);
  } catch {
    return new URL('/invalid-request-target', base);
  }
}

/** A decoded path segment; undefined when absent or not valid percent-encoding. */
function decodeSegment(segment: string | undefined): string | undefined {
  if (segment === undefined) return undefined;
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
