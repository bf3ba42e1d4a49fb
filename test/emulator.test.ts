/**
 * The emulator over real sockets, spoken to with plain fetch (never the project's provider client, so a
 * shared misunderstanding of the API cannot hide in both).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';
import ffprobeInstaller from '@ffprobe-installer/ffprobe';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { duplicateSubmissions, groupSubmissions, startEmulator, type Emulator, type EmulatorOptions, type Ledger, type LedgerSubmission } from '../src/emulator';
import { parseDirectives } from '../src/emulator/directives';
import { parseRange } from '../src/emulator/http';
import { outputFrameSize } from '../src/emulator/render';
import { VideoUrlSigner } from '../src/emulator/signing';
import { TaskStore } from '../src/emulator/tasks';
import { formatProviderTime } from '../src/emulator/wire';
import { SUBMIT_PATH, taskPath, type ErrorResponseBody, type SubmitResponseBody, type TaskResponseBody } from '../src/provider/types';
import { bmp } from './helpers/images';

const run = promisify(execFile);
const FFMPEG = process.env.FFMPEG_PATH ?? ffmpegInstaller.path;
const FFPROBE = process.env.FFPROBE_PATH ?? ffprobeInstaller.path;
const KEY = 'test-key';

let scratch: string;
const emulators: Emulator[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'i2v-emulator-test-'));
});

afterAll(async () => {
  await Promise.all(emulators.map((e) => e.close()));
  await rm(scratch, { recursive: true, force: true });
});

async function emulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const emu = await startEmulator({ apiKey: KEY, pendingMs: 0, runningMs: 0, videoSeconds: 1, ...options });
  emulators.push(emu);
  return emu;
}

// ---------------------------------------------------------------------------------------------------------
// Images

/** Gradients plus a checkerboard of blocks, so a wrong crop, scale or colour conversion shows in a 32×18 thumbnail. */
async function pattern(width: number, height: number, format: 'png' | 'jpeg' | 'webp' = 'png'): Promise<Buffer> {
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      pixels[i] = Math.round((x * 255) / width);
      pixels[i + 1] = Math.round((y * 255) / height);
      pixels[i + 2] = (Math.floor((x * 4) / width) + Math.floor((y * 3) / height)) % 2 ? 220 : 30;
    }
  }
  return sharp(pixels, { raw: { width, height, channels: 3 } }).toFormat(format).toBuffer();
}

async function pngWithAlpha(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 4, background: { r: 10, g: 200, b: 90, alpha: 0.5 } } }).png().toBuffer();
}


const dataUrl = (mime: string, bytes: Buffer): string => `data:${mime};base64,${bytes.toString('base64')}`;

let smallPng: Buffer;
beforeAll(async () => {
  smallPng = await pattern(640, 360);
});

function request(imgUrl: string, prompt = 'a calm lake', extra: { model?: string; resolution?: string; duration?: number } = {}): unknown {
  return {
    model: extra.model ?? 'wan2.2-i2v-flash',
    input: { prompt, img_url: imgUrl },
    parameters: { resolution: extra.resolution ?? '480P', prompt_extend: true, ...(extra.duration !== undefined && { duration: extra.duration }) },
  };
}

// ---------------------------------------------------------------------------------------------------------
// HTTP

interface Reply<T> {
  status: number;
  headers: Headers;
  body: T;
}

async function post<T = SubmitResponseBody>(emu: Emulator, body: unknown, headers: Record<string, string> = {}, base = emu.baseUrl): Promise<Reply<T>> {
  const res = await fetch(`${base}${SUBMIT_PATH}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as T };
}

async function get<T = TaskResponseBody>(emu: Emulator, taskId: string, headers: Record<string, string> = {}, base = emu.baseUrl): Promise<Reply<T>> {
  const res = await fetch(`${base}${taskPath(taskId)}`, { headers: { Authorization: `Bearer ${KEY}`, ...headers } });
  return { status: res.status, headers: res.headers, body: (await res.json()) as T };
}

async function submitOk(emu: Emulator, body: unknown): Promise<string> {
  const reply = await post(emu, body);
  expect(reply.status, JSON.stringify(reply.body)).toBe(200);
  return reply.body.output.task_id;
}

/** Polls until `done` holds (or the deadline passes), returning every status seen in order and the last body. */
async function pollUntil(emu: Emulator, taskId: string, done: (status: string) => boolean, timeoutMs = 20_000): Promise<{ seen: string[]; last: TaskResponseBody }> {
  const deadline = Date.now() + timeoutMs;
  const seen: string[] = [];
  for (;;) {
    const { status, body } = await get(emu, taskId);
    expect(status).toBe(200);
    if (seen.at(-1) !== body.output.task_status) seen.push(body.output.task_status);
    if (done(body.output.task_status)) return { seen, last: body };
    if (Date.now() > deadline) throw new Error(`task ${taskId} still ${body.output.task_status} after ${timeoutMs} ms (seen ${seen.join(' → ')})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const isTerminal = (s: string): boolean => ['SUCCEEDED', 'FAILED', 'UNKNOWN'].includes(s);

function expectApiError(reply: Reply<unknown>, status: number, code: string): void {
  const body = reply.body as ErrorResponseBody & { output?: unknown };
  expect({ status: reply.status, code: body.code }, body.message).toEqual({ status, code });
  expect(typeof body.message).toBe('string');
  expect(body.output).toBeUndefined();
  expect(reply.headers.get('x-request-id')).toBe(body.request_id);
}

// ---------------------------------------------------------------------------------------------------------

describe('pure parts', () => {
  it('sizes output frames like the provider: input aspect, tier pixel count, sides multiple of 16', () => {
    expect(outputFrameSize(1280, 720, '480P')).toEqual({ width: 848, height: 480 });
    expect(outputFrameSize(1280, 720, '720P')).toEqual({ width: 1280, height: 720 });
    expect(outputFrameSize(720, 1280, '720P')).toEqual({ width: 720, height: 1280 });
    const square = outputFrameSize(1000, 1000, '1080P');
    expect(square).toEqual({ width: 1440, height: 1440 });
  });

  it('walks a task through PENDING, RUNNING and its outcome on an injected clock', () => {
    let now = 1_000_000;
    const store = new TaskStore(() => now, { pendingMs: 100, runningMs: 200, ttlMs: 10_000 });
    const base = { prompt: 'p', actualPrompt: 'p', resolution: '480P' as const, videoSeconds: 5 };
    store.create({ id: 'ok', outcome: { kind: 'succeed' }, ...base });
    store.create({ id: 'bad', outcome: { kind: 'fail', code: 'DataInspectionFailed', message: 'no' }, ...base });
    store.create({ id: 'stuck', outcome: { kind: 'stuck' }, ...base });
    store.create({ id: 'broken', outcome: { kind: 'succeed' }, ...base });
    const status = (id: string): string => store.view(id).status;

    expect(status('ok')).toBe('PENDING');
    now += 100;
    expect(status('ok')).toBe('RUNNING');
    now += 200;
    expect(status('ok')).toBe('RUNNING'); // due, but the video is not rendered yet
    expect(status('bad')).toBe('FAILED');
    now += 50;
    store.renderDone('ok', { path: '/v.mp4', bytes: 1 });
    store.renderFailed('broken', 'InternalError', 'boom');
    const done = store.view('ok');
    expect(done.status === 'SUCCEEDED' && done.endAt).toBe(1_000_350);
    expect(store.view('broken')).toMatchObject({ status: 'FAILED', code: 'InternalError' });
    now += 5_000;
    expect(status('stuck')).toBe('RUNNING');
    now += 5_000;
    expect(status('stuck')).toBe('UNKNOWN');
    expect(status('never-submitted')).toBe('UNKNOWN');
  });

  it('formats times as Beijing time without a zone', () => {
    expect(formatProviderTime(Date.UTC(2025, 0, 2, 20, 4, 5, 678))).toBe('2025-01-03 04:04:05.678');
  });

  it('parses single byte ranges and ignores what it does not support', () => {
    expect(parseRange(undefined, 100)).toEqual({ kind: 'whole' });
    expect(parseRange('bytes=0-9', 100)).toEqual({ kind: 'partial', start: 0, end: 9 });
    expect(parseRange('bytes=90-', 100)).toEqual({ kind: 'partial', start: 90, end: 99 });
    expect(parseRange('bytes=-10', 100)).toEqual({ kind: 'partial', start: 90, end: 99 });
    expect(parseRange('bytes=50-500', 100)).toEqual({ kind: 'partial', start: 50, end: 99 });
    expect(parseRange('bytes=100-', 100)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=0-1,5-6', 100)).toEqual({ kind: 'whole' });
    expect(parseRange('bytes=9-1', 100)).toEqual({ kind: 'whole' });
  });

  it('signs video URLs that expire, each with a key id of its own', () => {
    const signer = new VideoUrlSigner(1000);
    const url = new URL(signer.url('http://h', 'task', 5_000));
    const params = url.searchParams;
    const changed = (name: string, value?: string): URLSearchParams => {
      const copy = new URLSearchParams(params);
      if (value === undefined) copy.delete(name);
      else copy.set(name, value);
      return copy;
    };
    expect(url.pathname).toBe('/videos/task.mp4');
    expect(signer.check('task', params, 5_500)).toBe('ok');
    expect(signer.check('task', params, 6_001)).toBe('expired');
    expect(signer.check('other', params, 5_500)).toBe('invalid');
    expect(signer.check('task', changed('Expires', '99999'), 5_500)).toBe('invalid');
    expect(signer.check('task', changed('OSSAccessKeyId', 'STS.someone-else'), 5_500)).toBe('invalid');
    expect(signer.check('task', changed('Signature'), 5_500)).toBe('invalid');
    const again = new URL(signer.url('http://h', 'task', 5_000));
    expect(again.href).not.toBe(url.href);
    expect(signer.check('task', again.searchParams, 5_500)).toBe('ok');
  });

  it('spreads RUNNING times by the jitter, from the given random source', () => {
    const draws = [0, 0.5, 0.999];
    const store = new TaskStore(() => 0, { pendingMs: 10, runningMs: 100, runningJitterMs: 1000, random: () => draws.shift() ?? 0, ttlMs: 10_000 });
    const base = { outcome: { kind: 'succeed' as const }, prompt: 'p', actualPrompt: 'p', resolution: '480P' as const, videoSeconds: 5 };
    expect(['a', 'b', 'c'].map((id) => store.create({ id, ...base }).dueAt)).toEqual([110, 610, 1109]);
  });

  it('draws RUNNING times from a sampler when given one, instead of the fixed time and jitter', () => {
    const draws = [5_000, 120.4, 0, -3];
    const store = new TaskStore(() => 0, { pendingMs: 10, runningMs: 100, runningJitterMs: 1000, random: () => 0.5, runningMsSampler: () => draws.shift() ?? 0, ttlMs: 10_000 });
    const base = { outcome: { kind: 'succeed' as const }, prompt: 'p', actualPrompt: 'p', resolution: '480P' as const, videoSeconds: 5 };
    expect(['a', 'b', 'c', 'd'].map((id) => store.create({ id, ...base }).dueAt)).toEqual([5_010, 130, 10, 10]);
  });

  it('groups paid submissions by image and prompt, and finds the ones paid more often than allowed', () => {
    const paid = (taskId: string, imageSha256: string, prompt: string): LedgerSubmission => ({
      taskId, at: '2025-01-01T00:00:00.000Z', model: 'wan2.2-i2v-flash', prompt, imageSha256, imageBytes: 1, mime: 'image/png', width: 640, height: 360, resolution: '480P',
    });
    const submissions = [paid('t1', 'img-a', 'walk'), paid('t2', 'img-b', 'walk'), paid('t3', 'img-a', 'run'), paid('t4', 'img-a', 'walk'), paid('t5', 'img-a', 'walk')];
    expect(groupSubmissions(submissions).map((g) => g.submissions.map((s) => s.taskId))).toEqual([['t1', 't4', 't5'], ['t2'], ['t3']]);
    expect(duplicateSubmissions(submissions).map((g) => [g.imageSha256, g.prompt, g.submissions.length])).toEqual([['img-a', 'walk', 3]]);
    // Shot a/walk made three takes (e.g. automatic new takes after transient failures): no duplicate.
    expect(duplicateSubmissions(submissions, (g) => (g.imageSha256 === 'img-a' && g.prompt === 'walk' ? 3 : 1))).toEqual([]);
  });

  it('reads prompt directives', () => {
    expect(parseDirectives('a cat [emulator:fail=DataInspectionFailed]')).toEqual({ fail: 'DataInspectionFailed', stuck: false });
    expect(parseDirectives('[emulator:reject=Arrearage] [emulator:stuck]')).toEqual({ reject: 'Arrearage', stuck: true });
    expect(parseDirectives('no directives [emulator:fail=]')).toEqual({ stuck: false });
  });
});

describe('a successful task', () => {
  let emu: Emulator;
  let image: Buffer;
  let taskId: string;
  let seen: string[];
  let last: TaskResponseBody;
  let videoUrl: string;
  let video: Buffer;
  let videoFile: string;
  const prompt = `a slow pan over a gradient ${'x'.repeat(850)}`;

  beforeAll(async () => {
    emu = await emulator({ pendingMs: 150, runningMs: 250 });
    image = await pattern(1280, 720);
    taskId = await submitOk(emu, request(dataUrl('image/png', image), prompt));
    ({ seen, last } = await pollUntil(emu, taskId, isTerminal));
    videoUrl = last.output.video_url ?? '';
    const res = await fetch(videoUrl);
    video = Buffer.from(await res.arrayBuffer());
    videoFile = path.join(scratch, 'success.mp4');
    await writeFile(videoFile, video);
  });

  it('goes PENDING → RUNNING → SUCCEEDED and reports the documented fields', () => {
    expect(seen).toEqual(['PENDING', 'RUNNING', 'SUCCEEDED']);
    const out = last.output;
    const time = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$/;
    expect(out.task_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(out.submit_time).toMatch(time);
    expect(out.scheduled_time).toMatch(time);
    expect(out.end_time).toMatch(time);
    expect(out.submit_time! < out.scheduled_time! && out.scheduled_time! < out.end_time!).toBe(true);
    expect(out.orig_prompt).toBe(prompt);
    expect(out.actual_prompt).toBe(prompt.slice(0, 800)); // wan2.2 silently truncates at 800 characters
    expect(last.usage).toEqual({ video_duration: 1, video_count: 1, SR: 480 });
    expect(videoUrl).toMatch(new RegExp(`^${emu.origin}/videos/${taskId}\\.mp4\\?Expires=\\d+&OSSAccessKeyId=STS\\.[0-9a-f]{24}&Signature=[0-9a-f]{64}$`));
  });

  it('answers queries under the 302.ai /aliyun prefix too', async () => {
    const reply = await get(emu, taskId, {}, `${emu.origin}/aliyun/api/v1`);
    expect(reply.body.output.task_status).toBe('SUCCEEDED');
  });

  it('serves the video with Content-Length, byte ranges and HEAD', async () => {
    const full = await fetch(videoUrl);
    expect(full.status).toBe(200);
    expect(full.headers.get('content-type')).toBe('video/mp4');
    expect(full.headers.get('accept-ranges')).toBe('bytes');
    expect(Number(full.headers.get('content-length'))).toBe(video.length);
    await full.arrayBuffer();

    const part = await fetch(videoUrl, { headers: { Range: 'bytes=100-299' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-299/${video.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(video.subarray(100, 300))).toBe(true);

    const tail = await fetch(videoUrl, { headers: { Range: `bytes=${video.length - 10}-` } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(video.subarray(video.length - 10))).toBe(true);

    const beyond = await fetch(videoUrl, { headers: { Range: `bytes=${video.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${video.length}`);
    await beyond.arrayBuffer();

    const head = await fetch(videoUrl, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBe(video.length);
  });

  it('refuses unsigned, tampered and unknown video URLs with OSS error documents', async () => {
    const unsigned = await fetch(`${emu.origin}/videos/${taskId}.mp4`);
    expect(unsigned.status).toBe(403);
    expect(unsigned.headers.get('content-type')).toBe('application/xml');
    expect(await unsigned.text()).toMatch(/^<\?xml[^>]*>\s*<Error>\s*<Code>SignatureDoesNotMatch<\/Code>/);
    const tampered = await fetch(videoUrl.replace(/Signature=./, (m) => (m.endsWith('0') ? `${m.slice(0, -1)}1` : `${m.slice(0, -1)}0`)));
    expect(tampered.status).toBe(403);
    await tampered.arrayBuffer();
    const unknown = await fetch(`${emu.origin}/videos/00000000-0000-0000-0000-000000000000.mp4`);
    expect(unknown.status).toBe(404);
    expect(await unknown.text()).toContain('<Code>NoSuchKey</Code>');
  });

  it('hands out a freshly signed URL on every query, each one valid', async () => {
    const again = (await get(emu, taskId)).body.output.video_url ?? '';
    expect(again).not.toBe(videoUrl);
    const res = await fetch(again, { method: 'HEAD' });
    expect(res.status).toBe(200);
  });

  it('renders a silent H.264 MP4 of the requested length at the tier size', async () => {
    const { stdout } = await run(FFPROBE, ['-v', 'error', '-print_format', 'json', '-show_streams', '-show_format', videoFile]);
    const probe = JSON.parse(stdout) as { streams: Array<Record<string, unknown>>; format: { duration: string; format_name: string } };
    expect(probe.streams).toHaveLength(1);
    expect(probe.streams[0]).toMatchObject({ codec_type: 'video', codec_name: 'h264', pix_fmt: 'yuv420p', width: 848, height: 480 });
    expect(probe.format.format_name).toContain('mp4');
    expect(Number(probe.format.duration)).toBeCloseTo(1, 1);
  });

  it('starts with the submitted image as its first frame', async () => {
    const framePath = path.join(scratch, 'frame0.png');
    await run(FFMPEG, ['-v', 'error', '-y', '-i', videoFile, '-frames:v', '1', framePath]);
    const thumb = (input: Buffer | string): Promise<Buffer> => sharp(input).resize(32, 18, { fit: 'fill' }).removeAlpha().raw().toBuffer();
    const [expected, actual] = await Promise.all([thumb(image), thumb(framePath)]);
    const diff = [0, 0, 0];
    for (let i = 0; i < expected.length; i++) diff[i % 3]! += Math.abs(expected[i]! - actual[i]!);
    const meanPerChannel = diff.map((d) => d / (expected.length / 3));
    for (const mean of meanPerChannel) expect(mean).toBeLessThan(12);
  });
});

describe('authentication and headers', () => {
  let emu: Emulator;
  beforeAll(async () => {
    emu = await emulator({ requireAsyncHeader: true });
  });

  it('rejects a missing or wrong Bearer key with 401 InvalidApiKey on submit and query', async () => {
    const body = request(dataUrl('image/png', smallPng));
    expectApiError(await post(emu, body, { Authorization: '' }), 401, 'InvalidApiKey');
    expectApiError(await post(emu, body, { Authorization: 'Bearer nope', 'X-DashScope-Async': 'enable' }), 401, 'InvalidApiKey');
    expectApiError(await get(emu, 'some-task', { Authorization: 'Bearer nope' }), 401, 'InvalidApiKey');
  });

  it('emulates DashScope direct: without X-DashScope-Async the submit gets 403 AccessDenied', async () => {
    const body = request(dataUrl('image/png', smallPng), '[emulator:stuck]');
    const refused = await post<ErrorResponseBody>(emu, body);
    expectApiError(refused, 403, 'AccessDenied');
    expect(refused.body.message).toBe('current user api does not support synchronous calls');
    expect((await post(emu, body, { 'X-DashScope-Async': 'enable' })).status).toBe(200);
  });
});

describe('request validation', () => {
  let emu: Emulator;
  beforeAll(async () => {
    emu = await emulator();
  });

  const cases: Array<[string, () => Promise<unknown>, number, string]> = [
    ['malformed JSON', async () => '{"model":', 400, 'InvalidParameter'],
    ['a missing model', async () => ({ input: { img_url: dataUrl('image/png', smallPng) } }), 400, 'BadRequest.EmptyModel'],
    ['an unknown model', async () => request(dataUrl('image/png', smallPng), 'p', { model: 'wan2.7-i2v' }), 404, 'ModelNotFound'],
    ['a resolution the model lacks', async () => request(dataUrl('image/png', smallPng), 'p', { model: 'wan2.6-i2v', resolution: '480P' }), 400, 'InvalidParameter'],
    ['a duration the model lacks', async () => request(dataUrl('image/png', smallPng), 'p', { duration: 10 }), 400, 'InvalidParameter'],
    ['a missing img_url', async () => ({ model: 'wan2.2-i2v-flash', input: { prompt: 'p' } }), 400, 'BadRequest.EmptyInput'],
    ['an http image URL', async () => request('https://example.com/a.png'), 400, 'InvalidParameter'],
    ['an unsupported MIME type', async () => request(dataUrl('image/gif', smallPng)), 400, 'InvalidParameter'],
    ['a MIME type that does not match the bytes', async () => request(dataUrl('image/jpeg', smallPng)), 400, 'InvalidParameter'],
    ['invalid base64', async () => request('data:image/png;base64,iVBOR*w0K'), 400, 'InvalidParameter'],
    ['bytes that do not decode', async () => request(dataUrl('image/png', Buffer.concat([smallPng.subarray(0, 8), Buffer.alloc(64, 7)]))), 400, 'InvalidParameter'],
    ['a 200×200 image', async () => request(dataUrl('image/png', await pattern(200, 200))), 400, 'InvalidParameter'],
    ['a 2100×400 image', async () => request(dataUrl('image/jpeg', await pattern(2100, 400, 'jpeg'))), 400, 'InvalidParameter'],
    ['a PNG with alpha', async () => request(dataUrl('image/png', await pngWithAlpha(640, 480))), 400, 'InvalidParameter'],
    ['a data URL over 10 MB', async () => request(`data:image/png;base64,${'A'.repeat(10 * 1024 * 1024)}`), 400, 'InvalidParameter'],
  ];

  it.each(cases)('rejects %s', async (_name, body, status, code) => {
    expectApiError(await post(emu, await body()), status, code);
  });

  it('says why http image URLs are refused', async () => {
    const reply = await post<ErrorResponseBody>(emu, request('http://example.com/a.png'));
    expect(reply.body.message).toContain('url images are not supported by the emulator');
  });

  it('accepts JPEG, WEBP and BMP, and renders BMP with ffmpeg', async () => {
    const jpeg = await post(emu, request(dataUrl('image/jpeg', await pattern(640, 360, 'jpeg')), '[emulator:stuck]'));
    const webp = await post(emu, request(dataUrl('image/webp', await pattern(640, 360, 'webp')), '[emulator:stuck]'));
    expect([jpeg.status, webp.status]).toEqual([200, 200]);
    const taskId = await submitOk(emu, request(dataUrl('image/bmp', bmp(640, 360))));
    const { last } = await pollUntil(emu, taskId, isTerminal);
    expect(last.output.task_status).toBe('SUCCEEDED');
  });

  it('records nothing for rejected submissions', () => {
    const ledger = emu.ledger();
    expect(ledger.posts).toBe(cases.length + 4);
    expect(ledger.submissions).toHaveLength(3);
  });
});

describe('fault injection', () => {
  let emu: Emulator;
  let body: unknown;
  beforeAll(async () => {
    emu = await emulator({ runningMs: 50 });
    body = request(dataUrl('image/png', smallPng), 'a field');
  });

  it('throttles the next N submits with 429 Throttling.RateQuota and Retry-After', async () => {
    emu.setFaults({ throttleSubmits: 2, retryAfterSeconds: 7 });
    for (let i = 0; i < 2; i++) {
      const reply = await post(emu, body);
      expectApiError(reply, 429, 'Throttling.RateQuota');
      expect(reply.headers.get('retry-after')).toBe('7');
    }
    expect((await post(emu, body)).status).toBe(200);
  });

  it('applies submit faults in the order throttle, quota, server error', async () => {
    emu.setFaults({ throttleSubmits: 1, quotaSubmits: 1, serverErrorSubmits: 1, serverErrorStatus: 503 });
    expectApiError(await post(emu, body), 429, 'Throttling.RateQuota');
    const quota = await post(emu, body);
    expectApiError(quota, 429, 'Throttling.AllocationQuota');
    expect(quota.headers.get('retry-after')).toBeNull();
    expectApiError(await post(emu, body), 503, 'InternalError');
    expect((await post(emu, body)).status).toBe(200);
  });

  it('fails the next N task queries with a server error', async () => {
    const taskId = await submitOk(emu, body);
    emu.setFaults({ serverErrorQueries: 2, serverErrorStatus: 502 });
    expectApiError(await get(emu, taskId), 502, 'InternalError');
    expectApiError(await get(emu, taskId), 502, 'InternalError');
    expect((await get(emu, taskId)).status).toBe(200);
  });

  it('ends the next N accepted tasks FAILED with the configured code', async () => {
    emu.setFaults({ failTasks: 1, failCode: 'InternalError.Algo', failMessage: 'algorithm failed' });
    const failing = await submitOk(emu, body);
    const healthy = await submitOk(emu, body);
    const { last } = await pollUntil(emu, failing, isTerminal);
    expect(last.output).toMatchObject({ task_status: 'FAILED', code: 'InternalError.Algo', message: 'algorithm failed' });
    expect(last.output.end_time).toBeDefined();
    expect(last.output.video_url).toBeUndefined();
    expect(last.usage).toBeUndefined();
    expect((await pollUntil(emu, healthy, isTerminal)).last.output.task_status).toBe('SUCCEEDED');
  });

  it('keeps tasks RUNNING while stuckTasks is on', async () => {
    emu.setFaults({ stuckTasks: true });
    const stuck = await submitOk(emu, body);
    emu.setFaults({ stuckTasks: false });
    const normal = await submitOk(emu, body);
    // By the time the normal task (same timings, plus a render) has finished, the stuck one must still be running.
    expect((await pollUntil(emu, normal, isTerminal)).last.output.task_status).toBe('SUCCEEDED');
    expect((await get(emu, stuck)).body.output.task_status).toBe('RUNNING');
  });

  it('exposes health, faults and the ledger on control endpoints', async () => {
    expect(await (await fetch(`${emu.origin}/__emulator/health`)).json()).toEqual({ ok: true });
    const set = await fetch(`${emu.origin}/__emulator/faults`, { method: 'POST', body: JSON.stringify({ throttleSubmits: 1 }) });
    expect(await set.json()).toMatchObject({ throttleSubmits: 1, failCode: 'InternalError.Algo' });
    expectApiError(await post(emu, body), 429, 'Throttling.RateQuota');
    const bad = await fetch(`${emu.origin}/__emulator/faults`, { method: 'POST', body: JSON.stringify({ throttle: 1 }) });
    expect(bad.status).toBe(400);
    await bad.arrayBuffer();
    const ledger = (await (await fetch(`${emu.origin}/__emulator/ledger`)).json()) as Ledger;
    expect(ledger).toEqual(emu.ledger());
    const unknown = await fetch(`${emu.origin}/nowhere`);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as ErrorResponseBody).code).toBeDefined();
  });
});

/** Reads a response body to its end or until the connection breaks; returns the bytes and the error, if any. */
async function readAll(res: Response): Promise<{ bytes: Buffer; error?: unknown }> {
  const chunks: Buffer[] = [];
  const reader = res.body!.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { bytes: Buffer.concat(chunks) };
      chunks.push(Buffer.from(value));
    }
  } catch (error) {
    return { bytes: Buffer.concat(chunks), error };
  }
}

/**
 * A GET with node:http, which hands over every byte that arrived before the connection broke (fetch may drop
 * the ones still queued when it errors the body), and says whether the body ended early.
 */
function rawGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; contentLength: number; bytes: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('close', () => resolve({ status: res.statusCode ?? 0, contentLength: Number(res.headers['content-length']), bytes: Buffer.concat(chunks), complete: res.complete }));
    }).once('error', reject);
  });
}

/** The low-level reason fetch gives for a failed request (e.g. ECONNRESET, UND_ERR_SOCKET). */
async function connectionFailure(request: Promise<unknown>): Promise<string> {
  const err = await request.then(() => undefined, (e: unknown) => e);
  expect(err, 'the request should have failed at the connection level').toBeInstanceOf(TypeError);
  const cause = (err as { cause?: { code?: string } }).cause;
  return cause?.code ?? String(cause);
}

describe('connection faults', () => {
  let emu: Emulator;
  let body: unknown;
  beforeAll(async () => {
    emu = await emulator({ runningMs: 50 });
    body = request(dataUrl('image/png', smallPng), 'a harbour');
  });

  it('resets the next N submits before reading them: nothing is created or billed', async () => {
    emu.setFaults({ resetSubmitsBeforeRead: 1 });
    const before = emu.ledger();
    expect(await connectionFailure(post(emu, body))).toMatch(/ECONNRESET|EPIPE|UND_ERR_SOCKET/);
    const after = emu.ledger();
    expect(after.posts - before.posts).toBe(1);
    expect(after.submissions).toHaveLength(before.submissions.length);
    expect((await post(emu, body)).status).toBe(200);
  });

  it('resets the next N accepted submits after creating (and billing) their task', async () => {
    emu.setFaults({ resetSubmitsAfterAccept: 1 });
    const before = emu.ledger();
    expect(await connectionFailure(post(emu, request(dataUrl('image/png', smallPng), 'paid but unanswered')))).toMatch(/ECONNRESET|UND_ERR_SOCKET/);
    const after = emu.ledger();
    expect(after.posts - before.posts).toBe(1);
    const billed = after.submissions.slice(before.submissions.length);
    expect(billed).toMatchObject([{ prompt: 'paid but unanswered' }]);
    // The task exists and runs, though the client never learned its id.
    const { last } = await pollUntil(emu, billed[0]!.taskId, isTerminal);
    expect(last.output.task_status).toBe('SUCCEEDED');
  });

  it('does not spend resetSubmitsAfterAccept on submits that are not accepted', async () => {
    emu.setFaults({ resetSubmitsAfterAccept: 1 });
    expectApiError(await post(emu, request(dataUrl('image/png', smallPng), 'blocked [emulator:reject=DataInspectionFailed]')), 400, 'DataInspectionFailed');
    expect(emu.ledger().submissions.length).toBeGreaterThan(0);
    await expect(post(emu, body)).rejects.toThrow();
    expect((await post(emu, body)).status).toBe(200);
  });

  it('resets the next N task queries, then answers again', async () => {
    const taskId = await submitOk(emu, body);
    emu.setFaults({ resetQueries: 2 });
    const gets = emu.ledger().gets;
    expect(await connectionFailure(get(emu, taskId))).toMatch(/ECONNRESET|UND_ERR_SOCKET/);
    await expect(get(emu, taskId)).rejects.toThrow();
    expect((await get(emu, taskId)).status).toBe(200);
    expect(emu.ledger().gets - gets).toBe(3);
  });

  it('answers the next N task queries UNKNOWN (HTTP 200), then the real status again', async () => {
    const taskId = await submitOk(emu, body);
    await pollUntil(emu, taskId, isTerminal);
    emu.setFaults({ unknownTasks: 1 });
    const unknown = await get(emu, taskId);
    expect(unknown.status).toBe(200);
    expect(unknown.body.output).toEqual({ task_id: taskId, task_status: 'UNKNOWN' });
    expect((await get(emu, taskId)).body.output.task_status).toBe('SUCCEEDED');
  });

  it('applies query faults in the order reset, server error, UNKNOWN, one per query', async () => {
    const taskId = await submitOk(emu, body);
    emu.setFaults({ resetQueries: 1, serverErrorQueries: 1, serverErrorStatus: 504, unknownTasks: 1 });
    await expect(get(emu, taskId)).rejects.toThrow();
    expectApiError(await get(emu, taskId), 504, 'InternalError');
    expect((await get(emu, taskId)).body.output.task_status).toBe('UNKNOWN');
    expect((await get(emu, taskId)).body.output.task_status).not.toBe('UNKNOWN');
  });

  it('answers 504 on submit when asked, and refuses statuses it does not emulate', async () => {
    emu.setFaults({ serverErrorSubmits: 1, serverErrorStatus: 504 });
    expectApiError(await post(emu, body), 504, 'InternalError');
    const bad = await fetch(`${emu.origin}/__emulator/faults`, { method: 'POST', body: JSON.stringify({ serverErrorStatus: 501 }) });
    expect(bad.status).toBe(400);
    const negative = await fetch(`${emu.origin}/__emulator/faults`, { method: 'POST', body: JSON.stringify({ truncateDownloads: -1 }) });
    expect(negative.status).toBe(400);
    await Promise.all([bad.arrayBuffer(), negative.arrayBuffer()]);
  });
});

describe('download faults', () => {
  let emu: Emulator;
  let taskId: string;
  let videoUrl: string;
  let video: Buffer;
  beforeAll(async () => {
    emu = await emulator({ runningMs: 50, videoSeconds: 2 });
    taskId = await submitOk(emu, request(dataUrl('image/png', await pattern(1280, 720)), 'a slow dolly'));
    videoUrl = (await pollUntil(emu, taskId, isTerminal)).last.output.video_url ?? '';
    video = Buffer.from(await (await fetch(videoUrl)).arrayBuffer());
  });

  it('refuses the next N video GETs as expired (OSS 403 AccessDenied XML), while queries keep handing out fresh URLs', async () => {
    emu.setFaults({ expireVideoUrls: 1 });
    const refused = await fetch(videoUrl);
    expect(refused.status).toBe(403);
    expect(refused.headers.get('content-type')).toBe('application/xml');
    const xml = await refused.text();
    expect(xml).toContain('<Code>AccessDenied</Code>');
    expect(xml).toContain('<Message>Request has expired.</Message>');
    const fresh = (await get(emu, taskId)).body.output.video_url ?? '';
    expect(fresh).not.toBe(videoUrl);
    const retry = await fetch(fresh);
    expect(retry.status).toBe(200);
    expect(Buffer.from(await retry.arrayBuffer()).equals(video)).toBe(true);
  });

  it('cuts the next N video GETs off after half the body, having promised all of it', async () => {
    emu.setFaults({ truncateDownloads: 1 });
    const downloads = emu.ledger().downloads;
    const cut = await rawGet(videoUrl);
    expect(cut).toMatchObject({ status: 200, contentLength: video.length, complete: false });
    expect(cut.bytes.equals(video.subarray(0, Math.floor(video.length / 2)))).toBe(true);
    const whole = await rawGet(videoUrl);
    expect(whole.complete).toBe(true);
    expect(whole.bytes.equals(video)).toBe(true);
    expect(emu.ledger().downloads - downloads).toBe(2);
  });

  it('truncates a range request to half of the range', async () => {
    emu.setFaults({ truncateDownloads: 1 });
    const cut = await rawGet(videoUrl, { Range: 'bytes=100-1099' });
    expect(cut).toMatchObject({ status: 206, contentLength: 1000, complete: false });
    expect(cut.bytes.equals(video.subarray(100, 600))).toBe(true);
  });

  it('sends video bodies at downloadBytesPerSecond', async () => {
    const rate = Math.ceil(video.length / 0.8); // about 0.8 s for the whole file
    emu.setFaults({ downloadBytesPerSecond: rate });
    try {
      const started = Date.now();
      const { bytes, error } = await readAll(await fetch(videoUrl));
      const elapsed = Date.now() - started;
      expect(error).toBeUndefined();
      expect(bytes.equals(video)).toBe(true);
      // The last of ten chunks a second leaves at 90% of the nominal time.
      expect(elapsed).toBeGreaterThanOrEqual(650);
    } finally {
      emu.setFaults({ downloadBytesPerSecond: 0 });
    }
    const started = Date.now();
    await readAll(await fetch(videoUrl));
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('lets HEAD requests through without spending download faults', async () => {
    emu.setFaults({ expireVideoUrls: 1 });
    expect((await fetch(videoUrl, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(videoUrl)).status).toBe(403);
  });
});

describe('prompt directives', () => {
  let emu: Emulator;
  beforeAll(async () => {
    emu = await emulator({ runningMs: 50 });
  });
  const withPrompt = (prompt: string): unknown => request(dataUrl('image/png', smallPng), prompt);

  it('[emulator:reject=CODE] fails the submit with 400 and CODE, unbilled', async () => {
    expectApiError(await post(emu, withPrompt('a beach [emulator:reject=DataInspectionFailed]')), 400, 'DataInspectionFailed');
    expect(emu.ledger().submissions).toHaveLength(0);
  });

  it('[emulator:fail=CODE] ends the task FAILED with CODE, and leaves the failTasks fault for other tasks', async () => {
    emu.setFaults({ failTasks: 1 });
    const directed = await submitOk(emu, withPrompt('a beach [emulator:fail=DataInspectionFailed]'));
    const plain = await submitOk(emu, withPrompt('a beach'));
    expect((await pollUntil(emu, directed, isTerminal)).last.output).toMatchObject({ task_status: 'FAILED', code: 'DataInspectionFailed' });
    expect((await pollUntil(emu, plain, isTerminal)).last.output).toMatchObject({ task_status: 'FAILED', code: 'InternalError' });
  });

  it('[emulator:stuck] keeps the task RUNNING', async () => {
    const stuck = await submitOk(emu, withPrompt('[emulator:stuck] a beach'));
    const normal = await submitOk(emu, withPrompt('a beach'));
    expect((await pollUntil(emu, normal, isTerminal)).last.output.task_status).toBe('SUCCEEDED');
    expect((await get(emu, stuck)).body.output.task_status).toBe('RUNNING');
  });
});

describe('UNKNOWN tasks', () => {
  it('answers 200 UNKNOWN for ids it never issued', async () => {
    const emu = await emulator();
    const reply = await get(emu, 'b3c1e2a0-0000-4000-8000-000000000000');
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ request_id: reply.headers.get('x-request-id'), output: { task_id: 'b3c1e2a0-0000-4000-8000-000000000000', task_status: 'UNKNOWN' } });
  });

  it('forgets tasks after taskTtlMs', async () => {
    const emu = await emulator({ taskTtlMs: 400 });
    const taskId = await submitOk(emu, request(dataUrl('image/png', smallPng), '[emulator:stuck]'));
    const { seen } = await pollUntil(emu, taskId, (s) => s === 'UNKNOWN', 5_000);
    expect(seen).toEqual(['RUNNING', 'UNKNOWN']);
  });
});

describe('ledger', () => {
  it('counts posts, gets, downloads and paid submissions, and keeps submissions across restarts', async () => {
    const ledgerFile = path.join(scratch, 'ledger.jsonl');
    const emu = await emulator({ ledgerFile });
    const image = smallPng;
    await post(emu, request(dataUrl('image/png', image)), { Authorization: 'Bearer wrong' });
    emu.setFaults({ throttleSubmits: 1 });
    await post(emu, request(dataUrl('image/png', image)));
    const taskId = await submitOk(emu, request(dataUrl('image/png', image), 'the paid one'));

    let gets = 0;
    let status = '';
    const deadline = Date.now() + 20_000;
    let videoUrl = '';
    while (!isTerminal(status) && Date.now() < deadline) {
      const { body } = await get(emu, taskId);
      gets++;
      status = body.output.task_status;
      videoUrl = body.output.video_url ?? '';
      if (!isTerminal(status)) await new Promise((r) => setTimeout(r, 20));
    }
    expect(status).toBe('SUCCEEDED');
    await (await fetch(videoUrl)).arrayBuffer();
    await (await fetch(videoUrl, { headers: { Range: 'bytes=0-9' } })).arrayBuffer();
    await fetch(videoUrl, { method: 'HEAD' });

    const ledger = emu.ledger();
    expect({ posts: ledger.posts, gets: ledger.gets, downloads: ledger.downloads }).toEqual({ posts: 3, gets, downloads: 2 });
    expect(ledger.submissions).toEqual([
      {
        taskId,
        at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        model: 'wan2.2-i2v-flash',
        prompt: 'the paid one',
        imageSha256: createHash('sha256').update(image).digest('hex'),
        imageBytes: image.length,
        mime: 'image/png',
        width: 640,
        height: 360,
        resolution: '480P',
      },
    ]);
    ledger.submissions.pop();
    expect(emu.ledger().submissions).toHaveLength(1); // a snapshot, not the live array

    await emu.close();
    const restarted = await emulator({ ledgerFile });
    expect(restarted.ledger()).toMatchObject({ posts: 0, gets: 0, downloads: 0, submissions: [{ taskId }] });
    expect((await readFile(ledgerFile, 'utf8')).trim().split('\n')).toHaveLength(1);
  });
});

describe('close()', () => {
  it('kills a running render and removes its temp work dir', async () => {
    const emu = await emulator({ videoSeconds: 120 });
    await submitOk(emu, request(dataUrl('image/png', await pattern(1280, 720)), 'a long one', { resolution: '1080P' }));
    const deadline = Date.now() + 10_000;
    while (!(await readdir(emu.workDir)).some((f) => f.endsWith('.mp4.part'))) {
      if (Date.now() > deadline) throw new Error('ffmpeg never started writing');
      await new Promise((r) => setTimeout(r, 20));
    }
    const started = Date.now();
    await emu.close();
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(existsSync(emu.workDir)).toBe(false);
    await expect(fetch(`${emu.origin}/__emulator/health`)).rejects.toThrow();
  });
});
