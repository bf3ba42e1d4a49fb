import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../src/errors';
import { runFfmpeg } from '../src/media/binaries';
import { DownloadError, downloadVideo } from '../src/media/download';
import { DEFAULT_IMAGE_LIMITS, type ImageLimits, type PreparedImage, prepareImage, targetSize } from '../src/media/image';
import { toDataUrl } from '../src/provider/body';
import { extractThumbnails, probeVideo, VideoInvalidError } from '../src/media/video';
import { bmp } from './helpers/images';

let root: string;
let cacheDir: string;

beforeAll(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'i2v-media-'));
  cacheDir = path.join(root, 'cache');
});

afterAll(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

/** A flat-colour image of the given size, with a red block top-left so orientation and content are checkable. */
async function picture(width: number, height: number, channels: 3 | 4 = 3): Promise<Sharp> {
  const block = { width: Math.max(1, Math.floor(width / 4)), height: Math.max(1, Math.floor(height / 4)) };
  const { data, info } = await sharp({ create: { width, height, channels, background: { r: 40, g: 120, b: 200, alpha: channels === 4 ? 0.5 : 1 } } })
    .composite([{ input: { create: { ...block, channels: 3, background: { r: 250, g: 30, b: 30 } } }, left: 0, top: 0 }])
    .raw()
    .toBuffer({ resolveWithObject: true });
  // composite() always outputs an alpha channel; drop it again for an opaque picture.
  const image = sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
  return channels === 3 ? image.removeAlpha() : image;
}

async function writeImage(name: string, image: Sharp): Promise<string> {
  const file = path.join(root, name);
  await image.toFile(file);
  return file;
}


interface Snapshot { sha256: string; size: number; mtimeMs: number }

async function snapshot(file: string): Promise<Snapshot> {
  const [data, st] = await Promise.all([fs.readFile(file), fs.stat(file)]);
  return { sha256: createHash('sha256').update(data).digest('hex'), size: st.size, mtimeMs: st.mtimeMs };
}

/** The data URL a submission sends for the prepared file. */
async function dataUrlOf(prepared: PreparedImage): Promise<string> {
  return toDataUrl(prepared.mime, await fs.readFile(prepared.path));
}

/** Runs prepareImage and proves the source file is byte-for-byte and mtime-for-mtime as it was. */
async function prepareUntouched(file: string, limits?: ImageLimits) {
  const before = await snapshot(file);
  try {
    return await prepareImage(file, cacheDir, limits);
  } finally {
    expect(await snapshot(file)).toEqual(before);
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('targetSize', () => {
  it('keeps sizes already in range, pins the long side when shrinking and the short side when enlarging', () => {
    expect(targetSize(1280, 720, DEFAULT_IMAGE_LIMITS)).toEqual({ width: 1280, height: 720 });
    expect(targetSize(4000, 2250, DEFAULT_IMAGE_LIMITS)).toEqual({ width: 2000, height: 1125 });
    expect(targetSize(2250, 4000, DEFAULT_IMAGE_LIMITS)).toEqual({ width: 1125, height: 2000 });
    expect(targetSize(300, 500, { ...DEFAULT_IMAGE_LIMITS, upscaleSmall: true })).toEqual({ width: 360, height: 600 });
  });

  it('rejects shapes no scale can fit, whatever --upscale-small says', () => {
    for (const upscaleSmall of [false, true]) {
      let thrown: unknown;
      try {
        targetSize(3000, 300, { ...DEFAULT_IMAGE_LIMITS, upscaleSmall });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toMatchObject({ category: 'image-aspect' });
    }
  });
});

describe('prepareImage', () => {
  it('returns a JPEG that already fits untouched, with the exact data-URL length', async () => {
    const file = await writeImage('fits.jpg', (await picture(800, 600)).jpeg({ quality: 90 }));
    const prepared = await prepareUntouched(file);
    const size = (await fs.stat(file)).size;
    expect(prepared).toMatchObject({ path: file, mime: 'image/jpeg', width: 800, height: 600, bytes: size, changes: [] });
    expect(prepared.sha256).toBe((await snapshot(file)).sha256);
    expect(prepared.fileSha256).toBe(prepared.sha256);
    expect(prepared.dataUrlBytes).toBe((await dataUrlOf(prepared)).length);
  });

  it('downscales a 4000×2250 JPEG to 2000×1125 into the cache', async () => {
    const file = await writeImage('big.jpg', (await picture(4000, 2250)).jpeg());
    const prepared = await prepareUntouched(file);
    expect(prepared).toMatchObject({ mime: 'image/jpeg', width: 2000, height: 1125 });
    expect(path.dirname(prepared.path)).toBe(cacheDir);
    expect(prepared.changes).toEqual(['resized from 4000×2250 to 2000×1125', 're-encoded as JPEG q95']);
    const meta = await sharp(prepared.path).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 2000, 1125]);
    expect(prepared.bytes).toBe((await fs.stat(prepared.path)).size);
    expect(prepared.fileSha256).toBe((await snapshot(prepared.path)).sha256);
    expect(prepared.dataUrlBytes).toBe((await dataUrlOf(prepared)).length);
  });

  it('rejects a 200×200 PNG as too small with a fix naming --upscale-small, and enlarges it when allowed', async () => {
    const file = await writeImage('small.png', (await picture(200, 200)).png());
    const err = await rejection(prepareUntouched(file));
    expect(err).toBeInstanceOf(InputError);
    expect(err).toMatchObject({ category: 'image-too-small' });
    expect((err as InputError).fix).toContain('--upscale-small');

    const prepared = await prepareUntouched(file, { ...DEFAULT_IMAGE_LIMITS, upscaleSmall: true });
    expect(prepared).toMatchObject({ width: 360, height: 360, mime: 'image/jpeg' });
    expect(prepared.changes[0]).toBe('resized from 200×200 to 360×360');
  });

  it('rejects an image too elongated to fit', async () => {
    const file = await writeImage('strip.png', (await picture(3000, 300)).png());
    expect(await rejection(prepareUntouched(file))).toMatchObject({ category: 'image-aspect' });
  });

  it('flattens a PNG with alpha onto white', async () => {
    const file = await writeImage('alpha.png', (await picture(500, 400, 4)).png());
    const prepared = await prepareUntouched(file);
    expect(prepared).toMatchObject({ mime: 'image/jpeg', width: 500, height: 400 });
    expect(prepared.changes).toContain('flattened transparency onto white');
    const meta = await sharp(prepared.path).metadata();
    expect(meta.hasAlpha).toBe(false);
    expect(meta.channels).toBe(3);
    // Half-transparent (40,120,200) over white is about (148,188,228).
    const { data } = await sharp(prepared.path).extract({ left: 400, top: 300, width: 1, height: 1 }).raw().toBuffer({ resolveWithObject: true });
    expect(Math.abs(data[0]! - 148)).toBeLessThan(6);
    expect(Math.abs(data[2]! - 228)).toBeLessThan(6);
  });

  it('rotates a JPEG with EXIF orientation 6 upright (width and height swap)', async () => {
    const file = await writeImage('rotated.jpg', (await picture(800, 400)).jpeg().withMetadata({ orientation: 6 }));
    expect((await sharp(file).metadata()).orientation).toBe(6);
    const prepared = await prepareUntouched(file);
    expect(prepared).toMatchObject({ width: 400, height: 800, mime: 'image/jpeg' });
    expect(prepared.changes).toContain('rotated upright (EXIF orientation 6)');
    const meta = await sharp(prepared.path).metadata();
    expect([meta.width, meta.height, meta.orientation ?? 1]).toEqual([400, 800, 1]);
    // The red block was top-left; orientation 6 means "rotate 90° clockwise", so it ends up top-right.
    const { data } = await sharp(prepared.path).extract({ left: 380, top: 10, width: 1, height: 1 }).raw().toBuffer({ resolveWithObject: true });
    expect(data[0]!).toBeGreaterThan(200);
  });

  it('accepts an opaque PNG as it is', async () => {
    const file = await writeImage('opaque.png', (await picture(1280, 720)).png());
    expect(await prepareUntouched(file)).toMatchObject({ path: file, mime: 'image/png', width: 1280, height: 720, changes: [] });
  });

  it('accepts a WEBP as it is', async () => {
    const file = await writeImage('photo.webp', (await picture(640, 480)).webp());
    expect(await prepareUntouched(file)).toMatchObject({ path: file, mime: 'image/webp', width: 640, height: 480, changes: [] });
  });

  it('accepts a 24-bit BMP as it is (decoded with ffmpeg: sharp has no BMP reader)', async () => {
    const file = path.join(root, 'frame.bmp');
    await fs.writeFile(file, bmp(400, 380));
    await expect(sharp(file).metadata()).rejects.toThrow(/unsupported image format/);
    expect(await prepareUntouched(file)).toMatchObject({ path: file, mime: 'image/bmp', width: 400, height: 380, changes: [] });
  });

  it('converts an oversized BMP to a JPEG with the right pixels', async () => {
    const file = path.join(root, 'wide.bmp');
    await fs.writeFile(file, bmp(2400, 600));
    const prepared = await prepareUntouched(file);
    expect(prepared).toMatchObject({ mime: 'image/jpeg', width: 2000, height: 500 });
    const { data } = await sharp(prepared.path).raw().toBuffer({ resolveWithObject: true });
    const at = (x: number, y: number) => Array.from(data.subarray((y * 2000 + x) * 3, (y * 2000 + x) * 3 + 3));
    expect(at(100, 250)[0]).toBeGreaterThan(230); // red half
    expect(at(1900, 250)[1]).toBeGreaterThan(230); // green half
  });

  it('rejects a corrupt .png and a truncated JPEG as unreadable', async () => {
    const corrupt = path.join(root, 'corrupt.png');
    await fs.writeFile(corrupt, Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), randomBytes(5000)]));
    const err = await rejection(prepareUntouched(corrupt));
    expect(err).toBeInstanceOf(InputError);
    expect(err).toMatchObject({ category: 'image-unreadable' });

    const whole = await (await picture(1000, 800)).jpeg().toBuffer();
    const truncated = path.join(root, 'truncated.jpg');
    await fs.writeFile(truncated, whole.subarray(0, Math.floor(whole.length / 2)));
    expect(await rejection(prepareUntouched(truncated))).toMatchObject({ category: 'image-unreadable' });
  });

  it('rejects a missing file and a non-image as input errors', async () => {
    expect(await rejection(prepareImage(path.join(root, 'nope.jpg'), cacheDir))).toMatchObject({ category: 'image-missing' });
    const text = path.join(root, 'notes.jpg');
    await fs.writeFile(text, 'not an image at all\n');
    expect(await rejection(prepareUntouched(text))).toMatchObject({ category: 'image-unreadable' });
  });

  it('reports the real format of a .png that is really a JPEG', async () => {
    const file = await writeImage('liar.png', (await picture(640, 480)).jpeg());
    expect(await prepareUntouched(file)).toMatchObject({ path: file, mime: 'image/jpeg', changes: [] });
  });

  describe('a noisy 2000×2000 PNG over 12 MB', () => {
    let noisy: string;
    beforeAll(async () => {
      noisy = path.join(root, 'noise.png');
      await sharp(randomBytes(2000 * 2000 * 3), { raw: { width: 2000, height: 2000, channels: 3 } })
        .png({ compressionLevel: 0 })
        .toFile(noisy);
    });

    it('is re-encoded to a JPEG whose data URL fits the default 10 MB', async () => {
      expect((await fs.stat(noisy)).size).toBeGreaterThan(12_000_000);
      const prepared = await prepareUntouched(noisy);
      expect(prepared).toMatchObject({ mime: 'image/jpeg', width: 2000, height: 2000, changes: ['re-encoded as JPEG q95'] });
      expect(prepared.dataUrlBytes).toBeLessThanOrEqual(DEFAULT_IMAGE_LIMITS.maxDataUrlBytes);
      expect(prepared.dataUrlBytes).toBe((await dataUrlOf(prepared)).length);
    });

    it('gets the highest quality that fits a tighter limit (one step up would not fit)', async () => {
      const limits = { ...DEFAULT_IMAGE_LIMITS, maxDataUrlBytes: 3_000_000 };
      const prepared = await prepareUntouched(noisy, limits);
      const quality = Number(/^re-encoded as JPEG q(\d+)$/.exec(prepared.changes.at(-1) ?? '')?.[1]);
      expect(quality).toBeGreaterThan(40);
      expect(quality).toBeLessThan(95);
      expect(prepared.dataUrlBytes).toBeLessThanOrEqual(limits.maxDataUrlBytes);
      const encodedAt = async (q: number) => (await sharp(noisy).jpeg({ quality: q, mozjpeg: false }).toBuffer()).length;
      expect(await encodedAt(quality)).toBe(prepared.bytes);
      const oneUp = await encodedAt(quality + 1);
      expect(`data:image/jpeg;base64,`.length + 4 * Math.ceil(oneUp / 3)).toBeGreaterThan(limits.maxDataUrlBytes);
    });

    it('is shrunk when even quality 40 does not fit', async () => {
      const limits = { ...DEFAULT_IMAGE_LIMITS, maxDataUrlBytes: 400_000 };
      const prepared = await prepareUntouched(noisy, limits);
      expect(prepared.width).toBeLessThan(2000);
      expect(prepared.width).toBe(prepared.height);
      expect(prepared.width).toBeGreaterThanOrEqual(360);
      expect(prepared.dataUrlBytes).toBeLessThanOrEqual(limits.maxDataUrlBytes);
      expect(prepared.changes[0]).toMatch(/^shrunk to \d+×\d+ to fit/);
    });

    it('comes from the cache on a second call (same file, not rewritten)', async () => {
      const first = await prepareUntouched(noisy);
      const cachedStat = await fs.stat(first.path);
      const started = performance.now();
      const second = await prepareUntouched(noisy);
      const elapsed = performance.now() - started;
      expect(second).toEqual(first);
      expect((await fs.stat(first.path)).mtimeMs).toBe(cachedStat.mtimeMs);
      expect(elapsed).toBeLessThan(500);
      const leftovers = (await fs.readdir(cacheDir)).filter((f) => f.endsWith('.tmp'));
      expect(leftovers).toEqual([]);
    });
  });

  it('knows the hash of a cached file written before hashes were recorded', async () => {
    const file = await writeImage('cached-long-ago.jpg', (await picture(2400, 1350)).jpeg());
    const first = await prepareImage(file, cacheDir);
    const sidecar = first.path.replace(/\.jpg$/, '.json');
    const { fileSha256, ...older } = JSON.parse(await fs.readFile(sidecar, 'utf8')) as { fileSha256?: string };
    expect(fileSha256).toBe((await snapshot(first.path)).sha256);
    await fs.writeFile(sidecar, JSON.stringify(older));
    const again = await prepareImage(file, cacheDir);
    expect(again).toEqual(first);
  });

  it('gives a changed source a new cache entry', async () => {
    const file = path.join(root, 'changing.png');
    await (await picture(3000, 1000)).png().toFile(file);
    const a = await prepareImage(file, cacheDir);
    await (await picture(3000, 1200)).png().toFile(file);
    const b = await prepareImage(file, cacheDir);
    expect(b.path).not.toBe(a.path);
    expect(b.sha256).not.toBe(a.sha256);
    expect([b.width, b.height]).toEqual([2000, 800]);
  });
});

describe('video', () => {
  let source: string;
  let video: string;

  beforeAll(async () => {
    source = await writeImage('still.png', (await picture(320, 180)).png());
    video = path.join(root, 'clip.mp4');
    await runFfmpeg(['-loop', '1', '-i', source, '-t', '2', '-r', '10', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-y', video]);
  });

  it('probes a 2 s H.264 MP4', async () => {
    const info = await probeVideo(video);
    expect(info.codec).toBe('h264');
    expect([info.width, info.height, info.fps]).toEqual([320, 180, 10]);
    expect(info.durationSeconds).toBeGreaterThan(1.8);
    expect(info.durationSeconds).toBeLessThan(2.2);
    expect(info.bytes).toBe((await fs.stat(video)).size);
  });

  it('rejects a text file as video-invalid', async () => {
    const text = path.join(root, 'fake.mp4');
    await fs.writeFile(text, 'this is not a video\n'.repeat(50));
    const err = await rejection(probeVideo(text));
    expect(err).toBeInstanceOf(VideoInvalidError);
    expect(err).toMatchObject({ code: 'video-invalid' });
    expect(await rejection(extractThumbnails(text, path.join(root, 'x.png'), path.join(root, 'x-small.png')))).toBeInstanceOf(VideoInvalidError);
  });

  it('refuses a file with no picture as video-invalid, leaving no thumbnail or temp file behind', async () => {
    const audio = path.join(root, 'voice.mp4');
    await runFfmpeg(['-f', 'lavfi', '-i', 'sine=frequency=440:duration=1', '-c:a', 'aac', '-y', audio]);
    const dir = path.join(root, 'no-picture');
    const err = await rejection(extractThumbnails(audio, path.join(dir, 'voice.png'), path.join(dir, 'voice-small.png')));
    expect(err).toBeInstanceOf(VideoInvalidError);
    expect((err as Error).message).toMatch(/^Cannot read a frame from voice\.mp4/);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('a thumbnail that cannot be written is an ordinary error, not a bad video, and leaves nothing behind', async () => {
    // The target's name fits, but the temp name beside it is too long to create, so ffmpeg fails on its output.
    const dir = path.join(root, 'unwritable');
    const err = await rejection(extractThumbnails(video, path.join(dir, `${'x'.repeat(240)}.png`), path.join(dir, 'x-small.png')));
    expect(err).not.toBeInstanceOf(VideoInvalidError);
    expect((err as Error).message).toMatch(/^Could not write the thumbnails of clip\.mp4/);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('writes a first-frame thumbnail that matches the source image, and a 150 px copy', async () => {
    // Characters ffmpeg would read as a pattern (%d) or a protocol (a colon) are taken as they are.
    const big = path.join(root, 'thumbs', 'clip 1%d:a.png');
    const small = path.join(root, 'thumbs', 'clip 1%d:a-small.png');
    const result = await extractThumbnails(video, big, small);
    expect(result).toEqual({ thumbnailPath: big, smallThumbnailPath: small, width: 320, height: 180 });
    const smallMeta = await sharp(small).metadata();
    expect([smallMeta.format, smallMeta.width, smallMeta.height]).toEqual(['png', 150, 84]);
    expect((await sharp(big).metadata()).format).toBe('png');

    const tiny = (file: string) => sharp(file).removeAlpha().resize(32, 18, { fit: 'fill' }).raw().toBuffer();
    const [a, b] = await Promise.all([tiny(source), tiny(big)]);
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff += Math.abs(a[i]! - b[i]!);
    expect(diff / a.length).toBeLessThan(12);
    expect((await fs.readdir(path.dirname(big))).sort()).toEqual(['clip 1%d:a-small.png', 'clip 1%d:a.png']);
  });
});

describe('downloadVideo', () => {
  let server: http.Server;
  let base: string;
  let clip: Buffer;
  const noise = randomBytes(1024 * 1024);

  beforeAll(async () => {
    const still = await writeImage('dl-still.png', (await picture(320, 180)).png());
    const file = path.join(root, 'dl-source.mp4');
    await runFfmpeg(['-loop', '1', '-i', still, '-t', '1', '-r', '10', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-y', file]);
    clip = await fs.readFile(file);

    server = http.createServer((req, res) => {
      const route = new URL(req.url ?? '/', 'http://x').pathname;
      switch (route) {
        case '/video.mp4':
          res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': clip.length });
          res.end(clip);
          return;
        case '/moved.mp4':
          res.writeHead(302, { location: '/video.mp4' });
          res.end();
          return;
        case '/truncated.mp4':
          // Promise the whole file, send half, then hang up.
          res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': clip.length });
          res.write(clip.subarray(0, Math.floor(clip.length / 2)), () => res.socket?.destroy());
          return;
        case '/expired.mp4':
          res.writeHead(403, { 'content-type': 'application/xml' });
          res.end('<Error><Code>AccessDenied</Code></Error>');
          return;
        case '/broken.mp4':
          res.writeHead(500);
          res.end('oops');
          return;
        case '/huge-declared.mp4':
          res.writeHead(200, { 'content-length': noise.length });
          res.end(noise);
          return;
        case '/huge-chunked.mp4':
          res.writeHead(200, { 'content-type': 'video/mp4' }); // no Content-Length: chunked
          for (let i = 0; i < noise.length; i += 64 * 1024) res.write(noise.subarray(i, i + 64 * 1024));
          res.end();
          return;
        case '/text.mp4': {
          const body = Buffer.from('not a video\n'.repeat(100));
          res.writeHead(200, { 'content-length': body.length });
          res.end(body);
          return;
        }
        default:
          res.writeHead(404);
          res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const dest = (name: string) => path.join(root, 'downloads', name);

  /** No partial file of `file` is left in its folder. */
  async function expectNoParts(file: string) {
    const names = await fs.readdir(path.dirname(file));
    expect(names.filter((n) => n.startsWith(path.basename(file)) && n.endsWith('.part'))).toEqual([]);
  }

  async function expectNothingLeft(file: string) {
    await expect(fs.access(file)).rejects.toThrow();
    await expectNoParts(file);
  }

  it('streams a video to its destination, verified, with no .part left', async () => {
    const target = dest('ok.mp4');
    const progress: number[] = [];
    const result = await downloadVideo(`${base}/video.mp4?Expires=1&Signature=abc`, target, {
      maxBytes: 10 * 1024 * 1024,
      onProgress: (bytes) => progress.push(bytes),
    });
    expect(result.path).toBe(target);
    expect(result.bytes).toBe(clip.length);
    expect(result.video).toMatchObject({ codec: 'h264', width: 320, height: 180, bytes: clip.length });
    expect((await fs.readFile(target)).equals(clip)).toBe(true);
    await expectNoParts(target);
    expect(progress.at(-1)).toBe(clip.length);
    expect(progress.length).toBeLessThanOrEqual(Math.ceil(clip.length / (256 * 1024)) + 1);
  });

  it('removes partial files left by an attempt whose process died', async () => {
    const target = dest('resumed.mp4');
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(`${target}.dead0001.part`, 'half a video');
    await downloadVideo(`${base}/video.mp4`, target, { maxBytes: 10 * 1024 * 1024 });
    await expectNoParts(target);
  });

  it('follows a redirect and overwrites an existing destination atomically', async () => {
    const target = dest('moved.mp4');
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, 'old take');
    const result = await downloadVideo(`${base}/moved.mp4`, target, { maxBytes: 10 * 1024 * 1024 });
    expect(result.bytes).toBe(clip.length);
    expect((await fs.readFile(target)).equals(clip)).toBe(true);
  });

  it('reports a truncated body as retryable and leaves neither .part nor destination', async () => {
    const target = dest('truncated.mp4');
    const err = await rejection(downloadVideo(`${base}/truncated.mp4`, target, { maxBytes: 10 * 1024 * 1024 }));
    expect(err).toBeInstanceOf(DownloadError);
    expect(err).toMatchObject({ code: 'truncated', retryable: true });
    await expectNothingLeft(target);
  });

  it('maps 403 to url-expired (not retryable) and keeps the signed query string out of the message', async () => {
    const target = dest('expired.mp4');
    const err = await rejection(downloadVideo(`${base}/expired.mp4?OSSAccessKeyId=k&Signature=s3cr3t`, target, { maxBytes: 1e6 }));
    expect(err).toMatchObject({ code: 'url-expired', retryable: false, httpStatus: 403 });
    expect((err as Error).message).not.toContain('s3cr3t');
    await expectNothingLeft(target);
  });

  it('maps 500 to a retryable network error', async () => {
    const err = await rejection(downloadVideo(`${base}/broken.mp4`, dest('broken.mp4'), { maxBytes: 1e6 }));
    expect(err).toMatchObject({ code: 'network', retryable: true, httpStatus: 500 });
  });

  it('refuses a body over maxBytes, declared or streamed', async () => {
    const declared = dest('huge-declared.mp4');
    expect(await rejection(downloadVideo(`${base}/huge-declared.mp4`, declared, { maxBytes: 300_000 })))
      .toMatchObject({ code: 'too-large', retryable: false });
    await expectNothingLeft(declared);

    const chunked = dest('huge-chunked.mp4');
    expect(await rejection(downloadVideo(`${base}/huge-chunked.mp4`, chunked, { maxBytes: 300_000 })))
      .toMatchObject({ code: 'too-large', retryable: false });
    await expectNothingLeft(chunked);
  });

  it('rejects a complete download that is not a video, leaving nothing behind', async () => {
    const target = dest('text.mp4');
    expect(await rejection(downloadVideo(`${base}/text.mp4`, target, { maxBytes: 1e6 })))
      .toMatchObject({ code: 'video-invalid', retryable: true });
    await expectNothingLeft(target);
  });

  it('refuses a URL that is not http(s) without touching the network', async () => {
    expect(await rejection(downloadVideo('file:///etc/passwd', dest('file.mp4'), { maxBytes: 1e6 })))
      .toMatchObject({ code: 'bad-url', retryable: false });
  });

  it('rejects with the abort reason when cancelled', async () => {
    const controller = new AbortController();
    const reason = new Error('activity cancelled');
    controller.abort(reason);
    const target = dest('cancelled.mp4');
    expect(await rejection(downloadVideo(`${base}/video.mp4`, target, { maxBytes: 1e7, signal: controller.signal }))).toBe(reason);
    await expectNothingLeft(target);
  });
});
