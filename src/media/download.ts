/**
 * Streams a finished video to disk: `<dest>.<random>.part`, checked against Content-Length and the size cap,
 * fsynced, verified with ffprobe, then renamed to `<dest>`. On any failure the .part is removed.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { type Dispatcher, getGlobalDispatcher, interceptors, request } from 'undici';
import { syncDir, writeAll } from '../atomic';
import { probeVideo, VideoInfo, VideoInvalidError } from './video';

export type DownloadErrorCode =
  /** 403/404/410: the signed URL has expired or was revoked; ask the provider for a fresh one. */
  | 'url-expired'
  /** Connection trouble, timeouts, 408/429/5xx. */
  | 'network'
  /** The body ended before the declared Content-Length. */
  | 'truncated'
  /** Over `maxBytes` (declared or streamed). */
  | 'too-large'
  /** Any other unexpected HTTP status. */
  | 'http-status'
  /** Not an http(s) URL at all. */
  | 'bad-url'
  /** Transferred completely but ffprobe cannot read it; worth one more try in case the transfer was bad. */
  | 'video-invalid';

export class DownloadError extends Error {
  override readonly name = 'DownloadError';
  readonly code: DownloadErrorCode;
  readonly retryable: boolean;
  readonly httpStatus: number | undefined;

  constructor(init: { message: string; code: DownloadErrorCode; retryable: boolean; httpStatus?: number; cause?: unknown }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.retryable = init.retryable;
    this.httpStatus = init.httpStatus;
  }
}

export interface DownloadResult {
  path: string;
  bytes: number;
  video: VideoInfo;
}

export interface DownloadOptions {
  maxBytes: number;
  /** Longest wait for the response headers, and for each piece of the body (an idle timeout, not a total). */
  timeoutMs?: number;
  /** Aborting deletes the .part and rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Called about every 256 KB and once at the end; `total` is the Content-Length when the server sent one. */
  onProgress?: (bytes: number, total?: number) => void;
}

const PROGRESS_EVERY = 256 * 1024;
const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_REDIRECTIONS = 5;

let redirecting: Dispatcher | undefined;

export async function downloadVideo(url: string, destPath: string, opts: DownloadOptions): Promise<DownloadResult> {
  // A name of its own per attempt, so an earlier attempt that is still winding down cannot clobber this one;
  // leftovers of attempts that died with their process are removed first.
  const part = `${destPath}.${randomBytes(4).toString('hex')}.part`;
  const where = describeUrl(url);
  await fs.mkdir(path.dirname(destPath), { recursive: true });
  await removeStaleParts(destPath);
  try {
    const bytes = await fetchToFile(url, part, where, opts);
    let video: VideoInfo;
    try {
      video = await probeVideo(part);
    } catch (err) {
      if (!(err instanceof VideoInvalidError)) throw err;
      throw new DownloadError({ message: `Downloaded ${where} but it is not a playable video: ${err.message}`, code: 'video-invalid', retryable: true, cause: err });
    }
    await fs.rename(part, destPath);
    await syncDir(path.dirname(destPath));
    return { path: destPath, bytes, video };
  } catch (err) {
    await fs.rm(part, { force: true });
    throw opts.signal?.aborted ? opts.signal.reason : err;
  }
}

async function removeStaleParts(destPath: string): Promise<void> {
  const dir = path.dirname(destPath);
  const prefix = `${path.basename(destPath)}.`;
  for (const name of await fs.readdir(dir)) {
    if (name.startsWith(prefix) && name.endsWith('.part')) await fs.rm(path.join(dir, name), { force: true });
  }
}

async function fetchToFile(url: string, part: string, where: string, opts: DownloadOptions): Promise<number> {
  const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let res: Dispatcher.ResponseData;
  try {
    redirecting ??= getGlobalDispatcher().compose(interceptors.redirect({ maxRedirections: MAX_REDIRECTIONS }));
    res = await request(url, {
      method: 'GET',
      dispatcher: redirecting,
      signal: opts.signal,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      // undici's request() does not decompress; ask for the bytes as stored so Content-Length means file size.
      headers: { 'accept-encoding': 'identity' },
    });
  } catch (err) {
    throw new DownloadError({ message: `Cannot fetch ${where}: ${describeError(err)}`, code: 'network', retryable: true, cause: err });
  }

  const { statusCode, headers, body } = res;
  if (statusCode !== 200) {
    await body.dump().catch(() => undefined);
    throw statusError(statusCode, where);
  }
  const declared = contentLength(headers['content-length']);
  if (declared !== undefined && declared > opts.maxBytes) {
    body.destroy();
    throw tooLarge(where, declared, opts.maxBytes);
  }

  let received = 0;
  let reported = 0;
  try {
    const fh = await fs.open(part, 'w');
    try {
      const chunks = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      for (;;) {
        // Only reading from the network is classified here; disk and callback errors pass through as they are.
        let step: IteratorResult<Buffer>;
        try {
          step = await chunks.next();
        } catch (err) {
          if (declared !== undefined && received < declared) throw truncated(where, received, declared, err);
          throw new DownloadError({ message: `Download of ${where} failed after ${received} bytes: ${describeError(err)}`, code: 'network', retryable: true, cause: err });
        }
        if (step.done) break;
        received += step.value.length;
        if (received > opts.maxBytes) throw tooLarge(where, received, opts.maxBytes);
        await writeAll(fh, step.value);
        if (opts.onProgress && received - reported >= PROGRESS_EVERY) {
          reported = received;
          opts.onProgress(received, declared);
        }
      }
      if (declared !== undefined && received !== declared) throw truncated(where, received, declared);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    body.destroy();
    throw err;
  }
  if (opts.onProgress && received !== reported) opts.onProgress(received, declared);
  return received;
}

function statusError(status: number, where: string): DownloadError {
  if (status === 403 || status === 404 || status === 410) {
    return new DownloadError({ message: `${where} answered HTTP ${status}: the video URL has expired or is gone.`, code: 'url-expired', retryable: false, httpStatus: status });
  }
  if (status === 408 || status === 429 || status >= 500) {
    return new DownloadError({ message: `${where} answered HTTP ${status}.`, code: 'network', retryable: true, httpStatus: status });
  }
  return new DownloadError({ message: `${where} answered HTTP ${status}.`, code: 'http-status', retryable: false, httpStatus: status });
}

function tooLarge(where: string, bytes: number, maxBytes: number): DownloadError {
  return new DownloadError({ message: `${where} is larger than the ${maxBytes}-byte limit (${bytes} bytes or more).`, code: 'too-large', retryable: false });
}

function truncated(where: string, received: number, declared: number, cause?: unknown): DownloadError {
  return new DownloadError({ message: `Download of ${where} ended after ${received} of ${declared} bytes.`, code: 'truncated', retryable: true, cause });
}

function contentLength(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || !/^\d+$/.test(text.trim())) return undefined;
  return Number(text);
}

/**
 * Signed URLs carry credentials in the query string, and error messages reach workflow history,
 * so messages name only origin and path.
 */
function describeUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DownloadError({ message: 'The video URL is not a valid URL.', code: 'bad-url', retryable: false });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new DownloadError({ message: `The video URL is not http(s): ${parsed.protocol}.`, code: 'bad-url', retryable: false });
  }
  return `${parsed.origin}${parsed.pathname}`;
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? `${err.message} (${code})` : err.message;
}
