import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { request } from 'undici';
import { ProviderError } from '../src/errors';
import type { ProviderConfig, GenerationParams } from '../src/config';
import { buildSubmitBody, createProviderClient, toDataUrl, type ProviderHttpClient } from '../src/provider/client';
import { classifyHttpError, classifyRequestFailure, parseRetryAfter, sanitizeBodyText, MAX_BODY_IN_MESSAGE } from '../src/provider/errors';
import { parseSubmitResponse, parseTaskResponse, parseUsage } from '../src/provider/response';
import type { TaskState } from '../src/provider/response';
import { startEmulator } from '../src/emulator';
import { base64Chunks, ImageReadError } from '../src/provider/body';

const KEY = 'sk-test-0123456789abcdef';
const PARAMS: GenerationParams = { model: 'wan2.2-i2v-flash', resolution: '480P', promptExtend: false };

function dashscopeError(code: string, message = 'details', requestId = 'req-1'): string {
  return JSON.stringify({ code, message, request_id: requestId });
}

async function caught(p: Promise<unknown>): Promise<ProviderError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ProviderError);
    return err as ProviderError;
  }
  throw new Error('expected a ProviderError, got success');
}

describe('classifyHttpError: every row of the reference error table (§5)', () => {
  const rows: Array<[status: number, code: string, retryable: boolean]> = [
    [400, 'InvalidParameter', false],
    [400, 'InvalidParameter.DataInspection', false],
    [400, 'DataInspectionFailed', false],
    [400, 'BadRequest.EmptyInput', false],
    [400, 'BadRequest.EmptyParameters', false],
    [400, 'BadRequest.EmptyModel', false],
    [400, 'InvalidURL', false],
    [400, 'Arrearage', false],
    [403, 'Arrearage', false],
    [400, 'UnsupportedOperation', false],
    [401, 'InvalidApiKey', false],
    [403, 'AccessDenied', false],
    [403, 'AccessDenied.Unpurchased', false],
    [403, 'Model.AccessDenied', false],
    [404, 'ModelNotFound', false],
    [429, 'Throttling', true],
    [429, 'Throttling.RateQuota', true],
    [429, 'Throttling.AllocationQuota', false],
    [429, 'AllocationQuota.FreeTierOnly', false],
    [500, 'InternalError', true],
    [500, 'InternalError.Algo', true],
    [503, 'ServiceUnavailable', true],
    [504, 'GatewayTimeout', true],
  ];
  it.each(rows)('HTTP %i %s → retryable %s', (status, code, retryable) => {
    const err = classifyHttpError(status, dashscopeError(code, 'provider says no', 'req-42'), {});
    expect(err).toBeInstanceOf(ProviderError);
    expect(err.code).toBe(code);
    expect(err.retryable).toBe(retryable);
    expect(err.outcomeUnknown).toBe(false);
    expect(err.httpStatus).toBe(status);
    expect(err.requestId).toBe('req-42');
    expect(err.message).toContain('provider says no');
    expect(err.message).toContain(code);
  });

  it('lets a known code decide over the status (a fatal code on a 5xx stays fatal, a retryable one on a 4xx retries)', () => {
    expect(classifyHttpError(500, dashscopeError('InvalidParameter'), {}).retryable).toBe(false);
    expect(classifyHttpError(400, dashscopeError('InternalError'), {}).retryable).toBe(true);
  });
});

describe('classifyHttpError: bodies that are not DashScope errors', () => {
  const rows: Array<[label: string, status: number, body: string, retryable: boolean]> = [
    ['302.ai balance error', 402, '{"error":{"err_code":-10001,"message":"Insufficient balance","type":"api_error"}}', false],
    ['302.ai bad key', 401, '{"error":{"message":"Invalid token"}}', false],
    ['unknown 4xx', 418, 'teapot', false],
    ['gateway HTML', 502, '<html><body><h1>502 Bad Gateway</h1></body></html>', true],
    ['empty 503', 503, '', true],
    ['plain text 500', 500, 'upstream exploded', true],
    ['429 without a code', 429, '{"error":{"message":"rate limited"}}', true],
  ];
  it.each(rows)('%s (HTTP %i) → retryable %s, raw body kept', (_label, status, body, retryable) => {
    const err = classifyHttpError(status, body, {});
    expect(err.retryable).toBe(retryable);
    expect(err.httpStatus).toBe(status);
    expect(err.message).toContain(`HTTP ${status}`);
    if (body === '') expect(err.message).toContain('(empty body)');
    else expect(err.message).toContain(body.slice(0, 20));
  });

  it('classifies an unknown provider code by status, keeping the code and message', () => {
    expect(classifyHttpError(400, dashscopeError('SomethingNew', 'new rule'), {})).toMatchObject({ code: 'SomethingNew', retryable: false, message: expect.stringContaining('new rule') });
    expect(classifyHttpError(502, dashscopeError('SomethingNew'), {})).toMatchObject({ code: 'SomethingNew', retryable: true });
  });

  it('names a codeless error after its status', () => {
    expect(classifyHttpError(402, '{"error":"no money"}', {}).code).toBe('HTTP_402');
  });

  it('truncates a long body and never repeats the API key, even when the body echoes it', () => {
    const body = `<pre>Authorization: Bearer ${KEY} ${'x'.repeat(5000)}</pre>`;
    const err = classifyHttpError(500, body, {}, { secrets: [KEY] });
    expect(err.message).not.toContain(KEY);
    expect(JSON.stringify({ ...err, message: err.message })).not.toContain(KEY);
    expect(err.message.length).toBeLessThan(MAX_BODY_IN_MESSAGE + 100);
  });

  it('takes the request id from X-Request-ID when the body has none', () => {
    expect(classifyHttpError(502, 'bad gateway', { 'x-request-id': 'hdr-7' }).requestId).toBe('hdr-7');
  });

  it('turns Retry-After into retryAfterMs', () => {
    const err = classifyHttpError(429, dashscopeError('Throttling.RateQuota'), { 'retry-after': '7' });
    expect(err.retryAfterMs).toBe(7000);
    expect(classifyHttpError(429, dashscopeError('Throttling.RateQuota'), {}).retryAfterMs).toBeUndefined();
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2025-06-01T12:00:00Z');
  const rows: Array<[value: string | string[] | undefined, expected: number | undefined]> = [
    ['5', 5000],
    ['0', 0],
    [' 12 ', 12000],
    ['1.5', 1500],
    [['3', '9'], 3000],
    ['Sun, 01 Jun 2025 12:00:10 GMT', 10_000],
    ['Sun, 01 Jun 2025 11:59:00 GMT', 0],
    ['', undefined],
    [undefined, undefined],
    ['soon', undefined],
    ['-3', undefined],
    ['1e3', undefined],
  ];
  it.each(rows)('%j → %s ms', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });
});

describe('classifyRequestFailure: was the request delivered?', () => {
  const sysErr = (code: string, syscall = 'connect'): Error => Object.assign(new Error(`${syscall} ${code} 127.0.0.1:1`), { code, syscall });
  const undiciErr = (code: string, name: string): Error => Object.assign(new Error(name), { code, name });
  const notDelivered = [sysErr('ECONNREFUSED'), sysErr('ENOTFOUND', 'getaddrinfo'), sysErr('EAI_AGAIN', 'getaddrinfo'), sysErr('ETIMEDOUT'), undiciErr('UND_ERR_CONNECT_TIMEOUT', 'ConnectTimeoutError')];
  const maybeDelivered = [
    undiciErr('UND_ERR_SOCKET', 'SocketError'),
    sysErr('ECONNRESET', 'read'),
    sysErr('ETIMEDOUT', 'read'),
    undiciErr('UND_ERR_HEADERS_TIMEOUT', 'HeadersTimeoutError'),
    undiciErr('UND_ERR_BODY_TIMEOUT', 'BodyTimeoutError'),
    new Error('something nobody expected'),
  ];

  it.each(notDelivered.map((e) => [(e as NodeJS.ErrnoException).code, e] as const))('%s → NetworkError, retryable for submit and query', (_code, e) => {
    for (const kind of ['submit', 'query'] as const) {
      const err = classifyRequestFailure(e, { kind, aborted: false });
      expect(err.code).toBe('NetworkError');
      expect(err.retryable).toBe(true);
      expect(err.outcomeUnknown).toBe(false);
    }
  });

  it.each(maybeDelivered.map((e) => [(e as NodeJS.ErrnoException).code ?? e.message, e] as const))('%s → submit outcome unknown, query retryable', (_code, e) => {
    const submit = classifyRequestFailure(e, { kind: 'submit', aborted: false });
    expect(submit).toMatchObject({ code: 'SubmitOutcomeUnknown', retryable: false, outcomeUnknown: true });
    const query = classifyRequestFailure(e, { kind: 'query', aborted: false });
    expect(query).toMatchObject({ code: 'NetworkError', retryable: true, outcomeUnknown: false });
  });

  it('an abort mid-request leaves a submission unknown and a query retryable', () => {
    const reason = new DOMException('This operation was aborted', 'AbortError');
    expect(classifyRequestFailure(reason, { kind: 'submit', aborted: true })).toMatchObject({ code: 'SubmitOutcomeUnknown', outcomeUnknown: true, retryable: false });
    expect(classifyRequestFailure(reason, { kind: 'query', aborted: true })).toMatchObject({ code: 'Aborted', retryable: true, outcomeUnknown: false });
  });

  it('an undici argument error is a client bug, not retryable', () => {
    expect(classifyRequestFailure(undiciErr('UND_ERR_INVALID_ARG', 'InvalidArgumentError'), { kind: 'submit', aborted: false })).toMatchObject({ code: 'ClientError', retryable: false, outcomeUnknown: false });
  });

  it('scrubs the key from a failure message', () => {
    const err = classifyRequestFailure(new Error(`boom Bearer ${KEY}`), { kind: 'query', aborted: false, secrets: [KEY] });
    expect(err.message).not.toContain(KEY);
  });
});

describe('sanitizeBodyText', () => {
  it('redacts configured secrets, bearer tokens and sk- keys', () => {
    const text = sanitizeBodyText('key=mysecretvalue auth="Bearer abc.def" other sk-abcdefgh12345', ['mysecretvalue']);
    expect(text).not.toMatch(/mysecretvalue|abc\.def|sk-abcdefgh12345/);
  });
});

describe('parseUsage: every usage shape in the reference (§4.2)', () => {
  const rows: Array<[label: string, raw: unknown, expected: object]> = [
    ['i2v observed', { SR: 720, duration: 5, video_count: 1 }, { resolutionTier: 720, videoSeconds: 5, videoCount: 1 }],
    ['video_duration + SR', { video_duration: 5, video_count: 1, SR: 1080 }, { videoSeconds: 5, videoCount: 1, resolutionTier: 1080 }],
    ['video_duration + ratio', { video_duration: 5, video_ratio: '832*480', video_count: 1 }, { videoSeconds: 5, videoCount: 1, ratio: '832*480' }],
    ['video_duration wins over duration', { video_duration: 10, duration: 5 }, { videoSeconds: 10 }],
    ['numbers as strings', { SR: '720P', video_duration: '5', video_count: '1' }, { resolutionTier: 720, videoSeconds: 5, videoCount: 1 }],
    ['absent', undefined, {}],
    ['null', null, {}],
    ['not an object', 'usage', {}],
    ['junk values', { SR: 'high', duration: null, video_count: {} }, {}],
  ];
  it.each(rows)('%s', (_label, raw, expected) => {
    expect(parseUsage(raw)).toEqual(expected);
  });
});

describe('parseTaskResponse / parseSubmitResponse', () => {
  const ctx = { status: 200, headerRequestId: 'hdr-1' };
  const task = (output: object, extra: object = {}): string => JSON.stringify({ request_id: 'r-1', output: { task_id: 't-1', ...output }, ...extra });

  it.each([
    ['PENDING', false, false],
    ['RUNNING', false, false],
    ['SUSPENDED', false, false],
    ['SUCCEEDED', true, true],
    ['SUCCESS', true, true],
    ['FAILED', true, false],
    ['CANCELED', true, false],
    ['UNKNOWN', true, false],
    [' succeeded ', true, true],
  ])('status %j → done %s, succeeded %s', (status, done, succeeded) => {
    const t = parseTaskResponse(task({ task_status: status }), 't-1', ctx);
    expect(t.status).toBe(status.trim().toUpperCase());
    expect(t.done).toBe(done);
    expect(t.succeeded).toBe(succeeded);
  });

  it('maps a SUCCEEDED body in full', () => {
    const t = parseTaskResponse(
      task(
        { task_status: 'SUCCEEDED', submit_time: '2025-06-01 10:00:00.000', scheduled_time: '2025-06-01 10:00:01.000', end_time: '2025-06-01 10:02:00.000', video_url: 'https://oss/x.mp4?Expires=1', orig_prompt: 'a', actual_prompt: 'a, cinematic' },
        { usage: { SR: 480, duration: 5, video_count: 1 } },
      ),
      't-1',
      ctx,
    );
    expect(t).toEqual({
      taskId: 't-1', status: 'SUCCEEDED', done: true, succeeded: true, videoUrl: 'https://oss/x.mp4?Expires=1',
      submitTime: '2025-06-01 10:00:00.000', scheduledTime: '2025-06-01 10:00:01.000', endTime: '2025-06-01 10:02:00.000',
      actualPrompt: 'a, cinematic', usage: { resolutionTier: 480, videoSeconds: 5, videoCount: 1 }, requestId: 'r-1',
    });
  });

  it('keeps a FAILED task’s code and message', () => {
    const t = parseTaskResponse(task({ task_status: 'FAILED', code: 'DataInspectionFailed', message: 'Output data may contain inappropriate content.' }), 't-1', ctx);
    expect(t).toMatchObject({ done: true, succeeded: false, code: 'DataInspectionFailed', message: 'Output data may contain inappropriate content.' });
  });

  it.each([['{}'], ['not json'], [''], ['{"output":{"task_id":"t-1"}}'], ['{"code":"x"}']])('a 200 query without a status (%j) is a retryable BadResponse', (body) => {
    let err: unknown;
    try {
      parseTaskResponse(body, 't-1', ctx);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ code: 'BadResponse', retryable: true, outcomeUnknown: false, requestId: body.includes('request_id') ? 'r' : 'hdr-1' });
  });

  it('a 200 submit without task_id or status is a BadResponse with an unknown outcome', () => {
    for (const body of ['{"output":{"task_status":"PENDING"}}', '{"output":{"task_id":"t"}}', '<html>', '']) {
      expect(() => parseSubmitResponse(body, ctx)).toThrow(ProviderError);
      try {
        parseSubmitResponse(body, ctx);
      } catch (e) {
        expect(e).toMatchObject({ code: 'BadResponse', retryable: false, outcomeUnknown: true });
      }
    }
  });

  it('parses a documented submit answer', () => {
    expect(parseSubmitResponse('{"output":{"task_status":"PENDING","task_id":"abc"},"request_id":"r-9"}', ctx)).toEqual({ taskId: 'abc', status: 'PENDING', requestId: 'r-9' });
  });
});

describe('request building', () => {
  it('sends duration only when it is set', () => {
    const base = { imageDataUrl: 'data:image/jpeg;base64,AAAA', prompt: 'a cat' };
    expect(buildSubmitBody({ ...base, params: PARAMS })).toEqual({ model: 'wan2.2-i2v-flash', input: { prompt: 'a cat', img_url: 'data:image/jpeg;base64,AAAA' }, parameters: { resolution: '480P', prompt_extend: false } });
    expect(buildSubmitBody({ ...base, params: { ...PARAMS, duration: 10 } }).parameters).toEqual({ resolution: '480P', prompt_extend: false, duration: 10 });
  });

  it('builds a data URL', () => {
    expect(toDataUrl('image/png', Buffer.from([1, 2, 3]))).toBe('data:image/png;base64,AQID');
  });

  it('encodes a byte stream in any chunking to the base64 of the whole, and only at its announced length', async () => {
    const bytes = Buffer.from(Array.from({ length: 40 }, (_, i) => (i * 37) % 256));
    async function* pieces(sizes: number[]): AsyncGenerator<Buffer> {
      let at = 0;
      for (const n of sizes) yield bytes.subarray(at, (at += n));
    }
    const encode = async (sizes: number[], expected = 40) => {
      let text = '';
      for await (const chunk of base64Chunks(pieces(sizes), expected)) text += chunk.toString();
      return text;
    };
    for (const sizes of [[40], [1, 1, 1, 37], [2, 5, 7, 11, 13, 2], [3, 3, 34], [39, 1]]) {
      expect(await encode(sizes)).toBe(bytes.toString('base64'));
    }
    await expect(encode([10, 10], 40)).rejects.toThrow(new ImageReadError('The image changed while it was sent (20 of its 40 bytes)'));
    await expect(encode([40], 30)).rejects.toBeInstanceOf(ImageReadError);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    let text = '';
    for await (const chunk of base64Chunks(pieces([7, 33]), 40, sha256)) text += chunk.toString();
    expect(text).toBe(bytes.toString('base64'));
    const other = base64Chunks(pieces([7, 33]), 40, createHash('sha256').update('other').digest('hex'));
    await expect((async () => { for await (const _ of other) void _; })()).rejects.toMatchObject({ name: 'ImageReadError', changed: true });
  });

  it('rejects a base URL that is not http(s) at construction', () => {
    expect(() => createProviderClient({ kind: 'emulator', baseUrl: 'ftp://x/api/v1', apiKey: KEY, asyncHeader: false, requestTimeoutMs: 1000 })).toThrow(/http/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Over real sockets: small servers that misbehave in exactly one way.

function config(baseUrl: string, over: Partial<ProviderConfig> = {}): ProviderConfig {
  return { kind: 'emulator', baseUrl, apiKey: KEY, asyncHeader: false, requestTimeoutMs: 5000, ...over };
}

const SUBMIT_INPUT = { image: { dataUrl: 'data:image/jpeg;base64,/9j/AAAA' }, prompt: 'a lighthouse at dusk', params: PARAMS };

async function listen(server: net.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
}

describe('over raw sockets', () => {
  const servers: net.Server[] = [];
  const clients: ProviderHttpClient[] = [];
  const track = <T extends net.Server>(s: T): T => (servers.push(s), s);
  const client = (baseUrl: string, over: Partial<ProviderConfig> = {}): ProviderHttpClient => {
    const c = createProviderClient(config(baseUrl, over));
    clients.push(c);
    return c;
  };
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => { (s as http.Server).closeAllConnections?.(); s.close(() => r()); })));
  });

  it('sends the documented submit and query requests (headers, path, body)', async () => {
    const seen: Array<{ method?: string; url?: string; headers: http.IncomingHttpHeaders; body: string }> = [];
    const server = track(http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, headers: req.headers, body });
        res.setHeader('content-type', 'application/json');
        res.end(req.method === 'POST'
          ? '{"output":{"task_status":"PENDING","task_id":"t-1"},"request_id":"r-1"}'
          : '{"output":{"task_status":"RUNNING","task_id":"t-1"},"request_id":"r-2"}');
      });
    }));
    const base = await listen(server);
    for (const asyncHeader of [false, true]) {
      const c = client(base, { asyncHeader });
      expect(await c.submit({ ...SUBMIT_INPUT, params: { ...PARAMS, duration: 5 } })).toEqual({ taskId: 't-1', status: 'PENDING', requestId: 'r-1' });
      expect(await c.getTask('t-1')).toMatchObject({ taskId: 't-1', status: 'RUNNING', done: false, requestId: 'r-2' });
    }
    const [post, get, postAsync, getAsync] = seen;
    expect(post).toMatchObject({ method: 'POST', url: '/api/v1/services/aigc/video-generation/video-synthesis' });
    expect(post?.headers).toMatchObject({ authorization: `Bearer ${KEY}`, 'content-type': 'application/json' });
    expect(post?.headers['x-dashscope-async']).toBeUndefined();
    expect(JSON.parse(post?.body ?? '')).toEqual({
      model: 'wan2.2-i2v-flash',
      input: { prompt: 'a lighthouse at dusk', img_url: 'data:image/jpeg;base64,/9j/AAAA' },
      parameters: { resolution: '480P', prompt_extend: false, duration: 5 },
    });
    expect(postAsync?.headers['x-dashscope-async']).toBe('enable');
    for (const g of [get, getAsync]) {
      expect(g).toMatchObject({ method: 'GET', url: '/api/v1/tasks/t-1', body: '' });
      expect(g?.headers.authorization).toBe(`Bearer ${KEY}`);
      expect(g?.headers['content-type']).toBeUndefined();
      expect(g?.headers['x-dashscope-async']).toBeUndefined();
    }
  });

  /** A server that answers every POST with a task and keeps what it received. */
  async function recordingServer(): Promise<{ base: string; bodies: Buffer[]; headers: http.IncomingHttpHeaders[] }> {
    const bodies: Buffer[] = [];
    const headers: http.IncomingHttpHeaders[] = [];
    const server = track(http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push(Buffer.concat(chunks));
        headers.push(req.headers);
        res.setHeader('content-type', 'application/json');
        res.end('{"output":{"task_status":"PENDING","task_id":"t-1"},"request_id":"r-1"}');
      });
    }));
    return { base: await listen(server), bodies, headers };
  }

  it('streams an image file as exactly the body its data URL gives, with the length announced', async () => {
    const { base, bodies, headers } = await recordingServer();
    const c = client(base);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'i2v-body-'));
    // Sizes around the 3-byte groups of base64 and the 192 KiB read chunks; a prompt that looks like the body.
    const sizes = [1, 2, 3, 4, 5, 196_607, 196_608, 196_609, 500_001];
    const prompt = 'she says "img_url":"" \\ and 人物 turns';
    for (const size of sizes) {
      const bytes = Buffer.alloc(size, 0);
      for (let i = 0; i < size; i++) bytes[i] = (i * 7 + size) % 256;
      const file = path.join(dir, `image-${size}.jpg`);
      await writeFile(file, bytes);
      expect(await c.submit({ image: { path: file, mime: 'Image/JPEG ' }, prompt, params: PARAMS })).toMatchObject({ taskId: 't-1' });
      const expected = JSON.stringify(buildSubmitBody({ imageDataUrl: toDataUrl('image/jpeg', bytes), prompt, params: PARAMS }));
      const received = bodies.at(-1)!;
      expect(received.equals(Buffer.from(expected)), `body of a ${size}-byte image`).toBe(true);
      expect(headers.at(-1)).toMatchObject({ 'content-length': String(received.length) });
      expect(headers.at(-1)?.['transfer-encoding']).toBeUndefined();
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('a prepared image that cannot be opened fails before anything is sent', async () => {
    let connections = 0;
    const server = track(net.createServer((socket) => { connections++; socket.resume(); }));
    const c = client(await listen(server));
    const submit = c.submit({ image: { path: path.join(os.tmpdir(), 'i2v-no-such-image.jpg'), mime: 'image/jpeg' }, prompt: 'x', params: PARAMS });
    await expect(submit).rejects.toMatchObject({ code: 'ENOENT' });
    expect(connections).toBe(0);
  });

  it('does not send an image whose content is not the one prepared, and says retrying would not help', async () => {
    const { base, bodies } = await recordingServer();
    const c = client(base);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'i2v-body-'));
    const file = path.join(dir, 'image.jpg');
    const prepared = Buffer.alloc(600_000, 7);
    await writeFile(file, prepared);
    const sha256 = createHash('sha256').update(prepared).digest('hex');
    expect(await c.submit({ image: { path: file, mime: 'image/jpeg', sha256 }, prompt: 'x', params: PARAMS })).toMatchObject({ taskId: 't-1' });
    // Edited in place since it was prepared: the same size, other bytes.
    await writeFile(file, Buffer.alloc(600_000, 8));
    const err = await caught(c.submit({ image: { path: file, mime: 'image/jpeg', sha256 }, prompt: 'x', params: PARAMS }));
    expect(err).toMatchObject({ code: 'ImageChanged', retryable: false, outcomeUnknown: false });
    expect(err.message).toMatch(/nothing was submitted: The image file is not the one that was prepared/);
    expect(bodies).toHaveLength(1);
    await rm(dir, { recursive: true, force: true });
  });

  it('an image that changes while it is sent ends the request short: not delivered, safe to retry', async () => {
    const { base, bodies } = await recordingServer();
    const c = client(base);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'i2v-body-'));
    // A pipe reports a size of 0 and then yields bytes: the body can no longer match its announced length.
    const fifo = path.join(dir, 'image.jpg');
    execFileSync('mkfifo', [fifo]);
    const [err] = await Promise.all([caught(c.submit({ image: { path: fifo, mime: 'image/jpeg' }, prompt: 'x', params: PARAMS })), writeFile(fifo, Buffer.alloc(1000, 1))]);
    expect(err).toMatchObject({ code: 'ImageUnreadable', retryable: true, outcomeUnknown: false });
    expect((err as Error).message).toMatch(/nothing was submitted: The image changed while it was sent \(more than its 0 bytes\)/);
    expect(bodies).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  });

  it('escapes the task id in the query path', async () => {
    const urls: string[] = [];
    const server = track(http.createServer((req, res) => {
      urls.push(req.url ?? '');
      res.end('{"output":{"task_status":"UNKNOWN"},"request_id":"r"}');
    }));
    const t = await client(await listen(server)).getTask('../a b');
    expect(urls).toEqual(['/api/v1/tasks/..%2Fa%20b']);
    expect(t).toMatchObject({ taskId: '../a b', status: 'UNKNOWN', done: true });
  });

  it('a connection dropped after the request was read: submit outcome unknown, query retryable', async () => {
    let requests = 0;
    const server = track(net.createServer((socket) => socket.once('data', () => { requests++; socket.destroy(); })));
    const c = client(await listen(server));
    const submit = await caught(c.submit(SUBMIT_INPUT));
    expect(submit).toMatchObject({ code: 'SubmitOutcomeUnknown', outcomeUnknown: true, retryable: false });
    const query = await caught(c.getTask('t-1'));
    expect(query).toMatchObject({ code: 'NetworkError', retryable: true, outcomeUnknown: false });
    expect(requests).toBe(2); // one attempt each: the client never retries
  });

  it('nothing listening (ECONNREFUSED): retryable, certainly not submitted', async () => {
    const probe = track(net.createServer());
    const base = await listen(probe);
    await new Promise<void>((r) => probe.close(() => r()));
    servers.pop();
    const c = client(base);
    expect(await caught(c.submit(SUBMIT_INPUT))).toMatchObject({ code: 'NetworkError', retryable: true, outcomeUnknown: false });
    expect(await caught(c.getTask('t-1'))).toMatchObject({ code: 'NetworkError', retryable: true, outcomeUnknown: false });
  });

  it('a server that never answers: requestTimeoutMs ends the call; submit outcome unknown, query retryable', async () => {
    const server = track(net.createServer((socket) => socket.resume()));
    const c = client(await listen(server), { requestTimeoutMs: 300 });
    const started = Date.now();
    expect(await caught(c.submit(SUBMIT_INPUT))).toMatchObject({ code: 'SubmitOutcomeUnknown', outcomeUnknown: true, retryable: false });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(await caught(c.getTask('t-1'))).toMatchObject({ code: 'NetworkError', retryable: true });
  });

  it('a body that stalls after 200 headers: submit outcome unknown (the task may exist)', async () => {
    const server = track(net.createServer((socket) => socket.once('data', () => socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"output":'))));
    const c = client(await listen(server), { requestTimeoutMs: 300 });
    expect(await caught(c.submit(SUBMIT_INPUT))).toMatchObject({ code: 'SubmitOutcomeUnknown', outcomeUnknown: true });
    expect(await caught(c.getTask('t-1'))).toMatchObject({ code: 'NetworkError', retryable: true });
  });

  it('an abort: before sending nothing goes out; mid-request a submission is unknown', async () => {
    let connections = 0;
    const server = track(net.createServer((socket) => { connections++; socket.resume(); }));
    const c = client(await listen(server));
    const pre = await caught(c.submit(SUBMIT_INPUT, { signal: AbortSignal.abort() }));
    expect(pre).toMatchObject({ code: 'Aborted', outcomeUnknown: false });
    expect(connections).toBe(0);
    const mid = await caught(c.submit(SUBMIT_INPUT, { signal: AbortSignal.timeout(200) }));
    expect(mid).toMatchObject({ code: 'SubmitOutcomeUnknown', outcomeUnknown: true, retryable: false });
    expect(await caught(c.getTask('t-1', { signal: AbortSignal.timeout(200) }))).toMatchObject({ code: 'Aborted', retryable: true });
  });

  it('a 200 with an unusable body: BadResponse (submit: outcome unknown; query: retryable)', async () => {
    const server = track(http.createServer((_req, res) => res.end('<html>maintenance</html>')));
    const c = client(await listen(server));
    expect(await caught(c.submit(SUBMIT_INPUT))).toMatchObject({ code: 'BadResponse', outcomeUnknown: true, retryable: false, httpStatus: 200 });
    expect(await caught(c.getTask('t-1'))).toMatchObject({ code: 'BadResponse', outcomeUnknown: false, retryable: true });
  });

  it('never leaks the key, even when an error page echoes the request headers', async () => {
    const server = track(http.createServer((req, res) => {
      res.statusCode = 502;
      res.end(`<pre>upstream failed for ${req.headers.authorization}</pre>`);
    }));
    const err = await caught(client(await listen(server)).submit(SUBMIT_INPUT));
    expect(err).toMatchObject({ httpStatus: 502, code: 'HTTP_502' });
    expect(err.message).toContain('upstream failed');
    expect(JSON.stringify({ ...err, message: err.message, stack: err.stack })).not.toContain(KEY);
  });

  it.each([502, 504])('treats a gateway %i on submit as an unknown outcome (the task may exist upstream), but retries it on query', async (status) => {
    let posts = 0;
    const server = track(http.createServer((req, res) => {
      if (req.method === 'POST') posts++;
      res.statusCode = status;
      res.end('<html>Bad Gateway</html>');
    }));
    const c = client(await listen(server));
    expect(await caught(c.submit(SUBMIT_INPUT))).toMatchObject({ httpStatus: status, retryable: false, outcomeUnknown: true });
    expect(await caught(c.getTask('t'))).toMatchObject({ httpStatus: status, retryable: true, outcomeUnknown: false });
    expect(posts).toBe(1);
  });

  it('reuses keep-alive connections across calls', async () => {
    let connections = 0;
    const server = track(http.createServer((_req, res) => res.end('{"output":{"task_status":"RUNNING","task_id":"t"},"request_id":"r"}')));
    server.on('connection', () => connections++);
    const c = client(await listen(server));
    for (let i = 0; i < 6; i++) await c.getTask('t');
    // Undici frees a socket a tick after the body ends, so back-to-back calls may open a second one.
    expect(connections).toBeLessThanOrEqual(2);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Against the emulator: every status and error class the client can meet, over real HTTP.

type Emulator = Awaited<ReturnType<typeof startEmulator>>;

const EMU_KEY = 'emulator-key';

async function jpeg(width: number, height: number): Promise<string> {
  const bytes = await sharp({ create: { width, height, channels: 3, background: { r: 40, g: 90, b: 160 } } }).jpeg().toBuffer();
  return toDataUrl('image/jpeg', bytes);
}

/** Polls until `stop` says so, recording every status seen. */
async function pollUntil(c: ProviderHttpClient, taskId: string, stop: (t: TaskState) => boolean, timeoutMs = 20_000): Promise<{ last: TaskState; seen: string[] }> {
  const seen: string[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const t = await c.getTask(taskId);
    if (seen[seen.length - 1] !== t.status) seen.push(t.status);
    if (stop(t)) return { last: t, seen };
    if (Date.now() > deadline) throw new Error(`task ${taskId} still ${t.status} after ${timeoutMs} ms (seen ${seen.join(' → ')})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('against the emulator', () => {
  let emu: Emulator;
  let c: ProviderHttpClient;
  let image: string;
  const extra: Array<{ close(): Promise<void> }> = [];
  const input = (prompt = 'a lighthouse at dusk, slow push-in'): typeof SUBMIT_INPUT => ({ image: { dataUrl: image }, prompt, params: PARAMS });

  beforeAll(async () => {
    image = await jpeg(640, 360);
    emu = await startEmulator({ pendingMs: 600, runningMs: 800, videoSeconds: 5 });
    c = createProviderClient(config(emu.baseUrl, { apiKey: EMU_KEY }));
  });
  afterEach(async () => {
    emu.setFaults({ throttleSubmits: 0, quotaSubmits: 0, serverErrorSubmits: 0, serverErrorQueries: 0, failTasks: 0, stuckTasks: false });
    await Promise.all(extra.splice(0).map((x) => x.close()));
  });
  afterAll(async () => {
    await c?.close();
    await emu?.close();
  });

  it('walks a task PENDING → RUNNING → SUCCEEDED, with a downloadable MP4, times and usage', async () => {
    const sub = await c.submit(input());
    expect(sub.status).toBe('PENDING');
    expect(sub.taskId).not.toBe('');
    expect(sub.requestId).not.toBe('');
    const { last, seen } = await pollUntil(c, sub.taskId, (t) => t.done);
    expect(seen).toEqual(['PENDING', 'RUNNING', 'SUCCEEDED']);
    expect(last).toMatchObject({ taskId: sub.taskId, done: true, succeeded: true, usage: { videoSeconds: 5 } });
    expect(last.usage.videoCount ?? 1).toBe(1);
    expect(last.submitTime).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
    expect(last.endTime).toBeDefined();
    expect(last.videoUrl).toMatch(/^https?:\/\//);
    const video = await request(last.videoUrl ?? '');
    const bytes = Buffer.from(await video.body.arrayBuffer());
    expect(video.statusCode).toBe(200);
    expect(bytes.subarray(4, 8).toString('latin1')).toBe('ftyp');
  });

  it('reports FAILED with the provider code and message (prompt directive and injected fault)', async () => {
    const byDirective = await c.submit(input('a storm [emulator:fail=InternalError]'));
    const a = (await pollUntil(c, byDirective.taskId, (t) => t.done)).last;
    expect(a).toMatchObject({ status: 'FAILED', done: true, succeeded: false, code: 'InternalError' });
    expect(a.message).toBeTruthy();
    expect(a.videoUrl).toBeUndefined();

    emu.setFaults({ failTasks: 1, failCode: 'DataInspectionFailed', failMessage: 'Output data may contain inappropriate content.' });
    const byFault = await c.submit(input());
    const b = (await pollUntil(c, byFault.taskId, (t) => t.done)).last;
    expect(b).toMatchObject({ status: 'FAILED', code: 'DataInspectionFailed', message: 'Output data may contain inappropriate content.' });
  });

  it('keeps a stuck task RUNNING (not done) after a task submitted with it has finished', async () => {
    const stuck = await c.submit(input('a clock [emulator:stuck]'));
    const normal = await c.submit(input());
    await pollUntil(c, normal.taskId, (t) => t.done);
    expect(await c.getTask(stuck.taskId)).toMatchObject({ status: 'RUNNING', done: false });
  });

  it('answers UNKNOWN (HTTP 200, terminal) for an id it never issued', async () => {
    const t = await c.getTask('00000000-0000-0000-0000-000000000000');
    expect(t).toMatchObject({ status: 'UNKNOWN', done: true, succeeded: false });
  });

  it('a wrong key is InvalidApiKey (401), fatal, on submit and query, without echoing the key', async () => {
    const wrong = createProviderClient(config(emu.baseUrl, { apiKey: 'sk-wrong-key-123456' }));
    extra.push(wrong);
    const submit = await caught(wrong.submit(input()));
    expect(submit).toMatchObject({ httpStatus: 401, code: 'InvalidApiKey', retryable: false, outcomeUnknown: false });
    expect(submit.message).not.toContain('sk-wrong-key-123456');
    expect(await caught(wrong.getTask('x'))).toMatchObject({ httpStatus: 401, code: 'InvalidApiKey', retryable: false });
  });

  it('429 Throttling.RateQuota is retryable with Retry-After, and the client does not retry it itself', async () => {
    emu.setFaults({ throttleSubmits: 1, retryAfterSeconds: 3 });
    const postsBefore = emu.ledger().posts;
    const err = await caught(c.submit(input()));
    expect(err).toMatchObject({ httpStatus: 429, code: 'Throttling.RateQuota', retryable: true, retryAfterMs: 3000, outcomeUnknown: false });
    expect(emu.ledger().posts).toBe(postsBefore + 1);
    expect((await c.submit(input())).status).toBe('PENDING');
  });

  it('429 Throttling.AllocationQuota is fatal', async () => {
    emu.setFaults({ quotaSubmits: 1 });
    expect(await caught(c.submit(input()))).toMatchObject({ httpStatus: 429, code: 'Throttling.AllocationQuota', retryable: false });
  });

  it.each([500, 503] as const)('HTTP %i InternalError is retryable on submit and query', async (status) => {
    const sub = await c.submit(input());
    emu.setFaults({ serverErrorStatus: status, serverErrorSubmits: 1, serverErrorQueries: 1 });
    expect(await caught(c.submit(input()))).toMatchObject({ httpStatus: status, code: 'InternalError', retryable: true, outcomeUnknown: false });
    expect(await caught(c.getTask(sub.taskId))).toMatchObject({ httpStatus: status, retryable: true });
    expect((await c.getTask(sub.taskId)).taskId).toBe(sub.taskId);
  });

  it('an invalid image is 400 InvalidParameter, fatal', async () => {
    const tooSmall = await caught(c.submit({ ...input(), image: { dataUrl: await jpeg(300, 300) } }));
    expect(tooSmall).toMatchObject({ httpStatus: 400, code: 'InvalidParameter', retryable: false });
    const png = await sharp({ create: { width: 640, height: 360, channels: 3, background: '#336699' } }).png().toBuffer();
    const mislabelled = await caught(c.submit({ ...input(), image: { dataUrl: toDataUrl('image/jpeg', png) } }));
    expect(mislabelled).toMatchObject({ httpStatus: 400, code: expect.stringMatching(/^InvalidParameter/), retryable: false });
  });

  it('a moderation rejection at submit is DataInspectionFailed, fatal', async () => {
    const err = await caught(c.submit(input('something unsafe [emulator:reject=DataInspectionFailed]')));
    expect(err).toMatchObject({ httpStatus: 400, code: 'DataInspectionFailed', retryable: false, outcomeUnknown: false });
  });

  describe('when the async header is required (DashScope direct)', () => {
    let strict: Emulator;
    beforeAll(async () => {
      strict = await startEmulator({ pendingMs: 200, runningMs: 200, requireAsyncHeader: true });
    });
    afterAll(async () => {
      await strict?.close();
    });

    it('without the header: 403 AccessDenied, fatal', async () => {
      const noHeader = createProviderClient(config(strict.baseUrl, { apiKey: EMU_KEY, asyncHeader: false }));
      extra.push(noHeader);
      expect(await caught(noHeader.submit(input()))).toMatchObject({ httpStatus: 403, code: 'AccessDenied', retryable: false });
    });

    it('with the header: accepted, and the query (which needs no header) works', async () => {
      const withHeader = createProviderClient(config(strict.baseUrl, { apiKey: EMU_KEY, asyncHeader: true }));
      extra.push(withHeader);
      const sub = await withHeader.submit(input());
      expect(sub.status).toBe('PENDING');
      expect((await withHeader.getTask(sub.taskId)).taskId).toBe(sub.taskId);
    });
  });
});
