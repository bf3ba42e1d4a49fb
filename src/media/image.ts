/**
 * Image preparation: turns a user's image into a file the video API accepts (video-api.md §3: JPEG/PNG/BMP/WEBP,
 * no alpha, each side in [360, 2000] px, data URL ≤ 10 MB), touching nothing when the original already fits.
 * Returns paths and facts, never pixels, because the result crosses a Temporal activity boundary.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import sharp, { type OutputInfo } from 'sharp';
import { DEFAULTS } from '../config';
import { InputError } from '../errors';
import { FfmpegError, runFfmpeg } from './binaries';
import { writeFileAtomic } from '../atomic';
import { withCpuSlot } from './cpuSlots';
import { dataUrlLength } from '../provider/body';

export interface ImageLimits {
  minSide: number;
  maxSide: number;
  /** Largest whole `data:<mime>;base64,<data>` string. */
  maxDataUrlBytes: number;
  /** Enlarge images whose short side is under `minSide` instead of rejecting them. */
  upscaleSmall: boolean;
}

export const DEFAULT_IMAGE_LIMITS: ImageLimits = {
  minSide: 360,
  maxSide: 2000,
  maxDataUrlBytes: DEFAULTS.maxDataUrlBytes,
  upscaleSmall: false,
};

export type ImageMime = 'image/jpeg' | 'image/png' | 'image/webp' | 'image/bmp';

export interface PreparedImage {
  /** The file to submit: the original when it already fits as-is, else a cached re-encode. */
  path: string;
  /** Format of `path` read from its content, not its extension. */
  mime: ImageMime;
  width: number;
  height: number;
  /** Size of `path`. */
  bytes: number;
  /** Exact length of the data URL `path` produces. */
  dataUrlBytes: number;
  /** Of the original file; the cache key. */
  sha256: string;
  /** Of the file at `path`: what is sent (the original's when it is sent untouched). */
  fileSha256: string;
  /** What was done to the original, for people; empty when it is submitted untouched. */
  changes: string[];
}

/** Larger inputs are refused rather than decoded (a 67 MP RGBA image is already ~270 MB of pixels). */
const MAX_INPUT_PIXELS = 8192 * 8192;
const MAX_SOURCE_BYTES = 200 * 1024 * 1024;
/** Part of the cache key: bump when the re-encode recipe changes so old cache entries are not reused. */
const RECIPE_VERSION = 1;
const QUALITY_MAX = 95;
const QUALITY_MIN = 40;
const SHRINK_STEP = 0.8;

const SHARP_INPUT = { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' } as const;

/** Formats the API takes as they are. */
const SUBMITTABLE = new Map<string, ImageMime>([['jpeg', 'image/jpeg'], ['png', 'image/png'], ['webp', 'image/webp']]);
/** Formats we can read and convert to JPEG; vector and document formats are not photos and are refused. */
const CONVERTIBLE = new Set(['tiff', 'gif', 'heif']);
/** The format each accepted extension promises, to notice a file whose content is not what its name says. */
const EXTENSION_FORMAT = new Map([['png', 'png'], ['jpg', 'jpeg'], ['jpeg', 'jpeg'], ['webp', 'webp'], ['bmp', 'bmp']]);

/** The submission inlines the image as a data URL, so that is what the size limit applies to. */
export { dataUrlLength };

/**
 * The size an image of `width`×`height` must be scaled to so both sides land in [minSide, maxSide],
 * keeping its aspect ratio. Throws InputError when that is impossible or needs an upscale that was not allowed.
 */
export function targetSize(width: number, height: number, limits: ImageLimits): { width: number; height: number } {
  const { minSide, maxSide } = limits;
  const long = Math.max(width, height);
  const short = Math.min(width, height);
  if (long / short > maxSide / minSide) {
    throw new InputError(
      `Image is ${width}×${height}: too elongated to fit ${minSide}–${maxSide} px on both sides.`,
      'image-aspect',
      `Crop it to an aspect ratio within ${(maxSide / minSide).toFixed(2)}:1.`,
    );
  }
  let scale = 1;
  if (long > maxSide) scale = maxSide / long;
  else if (short < minSide) {
    if (!limits.upscaleSmall) {
      throw new InputError(
        `Image is ${width}×${height}: each side must be at least ${minSide} px.`,
        'image-too-small',
        `Use a larger image, or pass --upscale-small to enlarge small images automatically.`,
      );
    }
    scale = minSide / short;
  }
  if (scale === 1) return { width, height };
  // Pin the side that decided the scale so rounding cannot push it out of range.
  const pinned = long > maxSide ? maxSide : minSide;
  const pinLong = long > maxSide;
  const scaleSide = (side: number, isLong: boolean): number =>
    isLong === pinLong ? pinned : Math.min(maxSide, Math.max(minSide, Math.round(side * scale)));
  const widthIsLong = width >= height;
  return { width: scaleSide(width, widthIsLong), height: scaleSide(height, !widthIsLong) };
}

export async function prepareImage(
  sourcePath: string,
  cacheDir: string,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
): Promise<PreparedImage> {
  return withCpuSlot(() => prepare(path.resolve(sourcePath), path.resolve(cacheDir), limits));
}

export interface ImagePreparationPlan {
  state: 'ready' | 'will-prepare' | 'error';
  /** For people: what preparation will do (and a note when the content is not the format its name says). */
  changes: string[];
  error?: InputError;
}

/**
 * What `prepareImage` will do with an image, found by reading it (its header, and its pixels unless
 * `verifyPixels` is false) without writing anything: `ready` (submitted as it is), `will-prepare` (with the
 * changes it will make) or `error` (the InputError `prepareImage` would throw). Both use `planFromDecoded`, so
 * they cannot disagree; only the outcome of the data-URL fit (the JPEG quality, or a shrink when even quality 40
 * is too big) is left to encoding time.
 */
export async function planImagePreparation(
  sourcePath: string,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
  opts: { verifyPixels?: boolean } = {},
): Promise<ImagePreparationPlan> {
  return withCpuSlot(async () => {
    const absolute = path.resolve(sourcePath);
    try {
      const source = await readSource(absolute);
      const image = await decode(source, absolute);
      const plan = planFromDecoded(image, source.length, limits);
      if (opts.verifyPixels ?? true) await verifyPixels(image, absolute);
      const notes = formatNotes(absolute, image.format);
      if (plan.asIs) return { state: 'ready', changes: notes };
      const reencode = plan.changes.length === 0 && plan.dataUrlBytes !== undefined
        ? `re-encoded as JPEG to fit the ${formatMb(limits.maxDataUrlBytes)} data-URL limit (as it is: ${formatMb(plan.dataUrlBytes)})`
        : 're-encoded as JPEG';
      return { state: 'will-prepare', changes: [...notes, ...plan.changes, reencode] };
    } catch (err) {
      if (err instanceof InputError) return { state: 'error', changes: [], error: err };
      throw err;
    }
  });
}

async function prepare(sourcePath: string, cacheDir: string, limits: ImageLimits): Promise<PreparedImage> {
  // Read once and work from these bytes, so the hash describes exactly what was checked and encoded.
  const source = await readSource(sourcePath);
  const sha256 = sha256Of(source);
  const cachePath = path.join(cacheDir, `${sha256}-${limitsKey(limits)}.jpg`);
  const cached = await readCacheEntry(cachePath, sha256);
  if (cached) return cached;

  const image = await decode(source, sourcePath);
  const plan = planFromDecoded(image, source.length, limits);
  if (plan.asIs) {
    // Metadata came from the header alone; decode the pixels too, so a truncated file is not sent as it is.
    await verifyPixels(image, sourcePath);
    const { width, height } = image.meta;
    return { path: sourcePath, mime: plan.mime!, width, height, bytes: source.length, dataUrlBytes: plan.dataUrlBytes!, sha256, fileSha256: sha256, changes: [] };
  }

  const { target } = plan;
  const changes = [...plan.changes];
  let pipeline = sharp(image.input, SHARP_INPUT).autoOrient();
  if (image.meta.hasAlpha) pipeline = pipeline.flatten({ background: '#ffffff' });
  if (plan.resize) pipeline = pipeline.resize(target.width, target.height, { fit: 'fill' });
  const pixels = await sharpRead(
    () => pipeline.toColourspace('srgb').raw().toBuffer({ resolveWithObject: true }),
    path.basename(sourcePath),
  );

  const encoded = await encodeToFit(pixels.data, pixels.info, limits);
  if (encoded.width !== target.width) {
    changes.push(`shrunk to ${encoded.width}×${encoded.height} to fit the ${formatMb(limits.maxDataUrlBytes)} data-URL limit`);
  }
  changes.push(`re-encoded as JPEG q${encoded.quality}`);

  await writeFileAtomic(cachePath, encoded.jpeg);
  const entry = { sha256, fileSha256: sha256Of(encoded.jpeg), width: encoded.width, height: encoded.height, bytes: encoded.jpeg.length, changes } satisfies CacheEntry;
  await writeFileAtomic(sidecarPath(cachePath), Buffer.from(JSON.stringify(entry)));
  return toPrepared(cachePath, entry);
}

interface Plan {
  /** The original can be submitted untouched (then `mime` and `dataUrlBytes` describe it). */
  asIs: boolean;
  mime: ImageMime | undefined;
  /** Data URL of the original, when its format is submittable. */
  dataUrlBytes: number | undefined;
  resize: boolean;
  /** Upright size after scaling into the side limits. */
  target: { width: number; height: number };
  /** Everything decided before encoding, in the order it is done. */
  changes: string[];
}

/** The decisions shared by prepareImage and planImagePreparation. Throws InputError for impossible sizes. */
function planFromDecoded(image: Decoded, sourceBytes: number, limits: ImageLimits): Plan {
  const { width, height, orientation, hasAlpha, pages, space } = image.meta;
  const turned = orientation >= 5;
  const upright = { width: turned ? height : width, height: turned ? width : height };
  const target = targetSize(upright.width, upright.height, limits);

  const rotate = orientation > 1;
  const resize = target.width !== upright.width || target.height !== upright.height;
  const plainColour = space === 'srgb' || space === 'b-w';
  const dataUrlBytes = image.mime ? dataUrlLength(image.mime, sourceBytes) : undefined;
  const submittable = !!image.mime && !rotate && !resize && !hasAlpha && pages <= 1 && plainColour;
  const asIs = submittable && dataUrlBytes !== undefined && dataUrlBytes <= limits.maxDataUrlBytes;

  const changes: string[] = [];
  if (!image.mime) changes.push(`converted from ${image.format.toUpperCase()}`);
  if (pages > 1) changes.push(`kept the first of ${pages} frames`);
  if (rotate) changes.push(`rotated upright (EXIF orientation ${orientation})`);
  if (hasAlpha) changes.push('flattened transparency onto white');
  if (!plainColour) changes.push(`converted colour space ${space} to sRGB`);
  if (resize) changes.push(`resized from ${upright.width}×${upright.height} to ${target.width}×${target.height}`);
  return { asIs, mime: image.mime, dataUrlBytes, resize, target, changes };
}

/** Decodes every pixel, so a truncated or corrupt file fails here rather than at the provider. */
async function verifyPixels(image: Decoded, sourcePath: string): Promise<void> {
  await sharpRead(() => sharp(image.input, SHARP_INPUT).stats(), path.basename(sourcePath));
}

function formatNotes(sourcePath: string, format: string): string[] {
  const ext = path.extname(sourcePath).slice(1).toLowerCase();
  const promised = EXTENSION_FORMAT.get(ext);
  return promised && promised !== format ? [`detected ${format.toUpperCase()} content in a .${ext} file`] : [];
}

interface Decoded {
  /** What sharp reads: the original bytes, or a lossless PNG of them when sharp cannot read the format (BMP). */
  input: Buffer;
  /** Set when the original can be submitted in its own format. */
  mime: ImageMime | undefined;
  format: string;
  meta: { width: number; height: number; orientation: number; hasAlpha: boolean; pages: number; space: string };
}

async function decode(source: Buffer, sourcePath: string): Promise<Decoded> {
  const name = path.basename(sourcePath);
  if (isBmp(source)) {
    const png = await bmpToPng(source, name);
    const meta = await readMeta(png, name);
    return { input: png, mime: 'image/bmp', format: 'bmp', meta };
  }
  const meta = await readMeta(source, name);
  return { input: source, mime: SUBMITTABLE.get(meta.format), format: meta.format, meta };
}

async function readMeta(input: Buffer, name: string): Promise<Decoded['meta'] & { format: string }> {
  const m = await sharpRead(() => sharp(input, SHARP_INPUT).metadata(), name);
  const format = m.format as string | undefined;
  if (!format || !(SUBMITTABLE.has(format) || CONVERTIBLE.has(format))) {
    throw unreadable(name, `it is ${format ? `a ${format.toUpperCase()} file` : 'not an image'}; use JPEG, PNG, WEBP or BMP`);
  }
  if (!m.width || !m.height) throw unreadable(name, 'it has no dimensions');
  return {
    format,
    width: m.width,
    height: m.height,
    orientation: m.orientation ?? 1,
    hasAlpha: m.hasAlpha ?? false,
    pages: m.pages ?? 1,
    space: m.space ?? 'srgb',
  };
}

/** Runs a sharp call, turning its complaints about the input into InputError. */
async function sharpRead<T>(fn: () => Promise<T>, name = 'image'): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/pixel limit/i.test(message)) {
      throw new InputError(`${name} has more than ${MAX_INPUT_PIXELS / 1e6 | 0} megapixels.`, 'image-too-large', 'Downscale it before adding it to the run.');
    }
    throw unreadable(name, message.split('\n')[0] ?? message);
  }
}

function unreadable(name: string, reason: string): InputError {
  // sharp's first line can end in a colon before its details; the sentence ends here instead.
  return new InputError(`Cannot read image ${name}: ${reason.replace(/[\s:.]+$/, '')}.`, 'image-unreadable', 'Re-export the image as JPEG or PNG.');
}

function isBmp(data: Buffer): boolean {
  return data.length >= 26 && data[0] === 0x42 && data[1] === 0x4d;
}

/** sharp has no BMP decoder, so ffmpeg converts it to a lossless PNG (in memory) first. */
async function bmpToPng(source: Buffer, name: string): Promise<Buffer> {
  const headerSize = source.readUInt32LE(14);
  const width = headerSize === 12 ? source.readUInt16LE(18) : Math.abs(source.readInt32LE(18));
  const height = headerSize === 12 ? source.readUInt16LE(20) : Math.abs(source.readInt32LE(22));
  if (width * height > MAX_INPUT_PIXELS) {
    throw new InputError(`${name} has more than ${MAX_INPUT_PIXELS / 1e6 | 0} megapixels.`, 'image-too-large', 'Downscale it before adding it to the run.');
  }
  try {
    const png = await runFfmpeg(
      ['-f', 'bmp_pipe', '-i', 'pipe:0', '-frames:v', '1', '-c:v', 'png', '-compression_level', '1', '-f', 'image2pipe', 'pipe:1'],
      { input: source },
    );
    if (png.length === 0) throw unreadable(name, 'the BMP has no picture');
    return png;
  } catch (err) {
    if (err instanceof FfmpegError) throw unreadable(name, `not a valid BMP (${err.message})`);
    throw err;
  }
}

async function readSource(sourcePath: string): Promise<Buffer> {
  const name = path.basename(sourcePath);
  try {
    const st = await fs.stat(sourcePath);
    if (!st.isFile()) throw unreadable(name, 'it is not a file');
    if (st.size > MAX_SOURCE_BYTES) {
      throw new InputError(`${name} is ${formatMb(st.size)}, over the ${formatMb(MAX_SOURCE_BYTES)} we will read.`, 'image-too-large', 'Downscale or re-export it as JPEG.');
    }
    return await fs.readFile(sourcePath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(`Image ${sourcePath} does not exist.`, 'image-missing', 'Check the file name in the run folder.');
    if (code === 'EACCES' || code === 'EPERM') throw unreadable(name, 'permission denied');
    throw err;
  }
}

interface Encoded {
  jpeg: Buffer;
  quality: number;
  width: number;
  height: number;
}

/**
 * The best JPEG whose data URL fits: the highest quality in [40, 95] that fits (binary search), and if even
 * quality 40 does not fit, the same search on a copy shrunk by 0.8 per step (never below `minSide`).
 */
async function encodeToFit(pixels: Buffer, info: OutputInfo, limits: ImageLimits): Promise<Encoded> {
  const raw = { width: info.width, height: info.height, channels: info.channels };
  const fits = (jpeg: Buffer): boolean => dataUrlLength('image/jpeg', jpeg.length) <= limits.maxDataUrlBytes;
  let current = { data: pixels, width: info.width, height: info.height };
  for (;;) {
    const { data, width, height } = current;
    const encode = (quality: number): Promise<Buffer> =>
      sharp(data, { raw: { width, height, channels: raw.channels } }).jpeg({ quality, mozjpeg: false }).toBuffer();

    const top = await encode(QUALITY_MAX);
    if (fits(top)) return { jpeg: top, quality: QUALITY_MAX, width, height };
    let best = await encode(QUALITY_MIN);
    if (fits(best)) {
      let lo = QUALITY_MIN; // fits
      let hi = QUALITY_MAX; // does not fit
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        const jpeg = await encode(mid);
        if (fits(jpeg)) {
          lo = mid;
          best = jpeg;
        } else hi = mid;
      }
      return { jpeg: best, quality: lo, width, height };
    }

    const short = Math.min(width, height);
    if (short <= limits.minSide) {
      throw new InputError(
        `Cannot encode the image under the ${formatMb(limits.maxDataUrlBytes)} data-URL limit.`,
        'image-too-large',
        'Simplify or crop the image.',
      );
    }
    const factor = Math.max(SHRINK_STEP * width / info.width, limits.minSide / Math.min(info.width, info.height));
    const next = { width: Math.round(info.width * factor), height: Math.round(info.height * factor) };
    const data2 = await sharp(pixels, { raw }).resize(next.width, next.height, { fit: 'fill' }).raw().toBuffer();
    current = { data: data2, ...next };
  }
}

interface CacheEntry {
  sha256: string;
  /** Of the cached JPEG; absent from entries written before it was recorded. */
  fileSha256?: string;
  width: number;
  height: number;
  bytes: number;
  changes: string[];
}

function sha256Of(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function sidecarPath(cachePath: string): string {
  return cachePath.replace(/\.jpg$/, '.json');
}

/** A cache hit needs both the JPEG and its sidecar, agreeing on size; anything else is rebuilt. */
async function readCacheEntry(cachePath: string, sha256: string): Promise<PreparedImage | undefined> {
  try {
    const entry = JSON.parse(await fs.readFile(sidecarPath(cachePath), 'utf8')) as CacheEntry;
    const st = await fs.stat(cachePath);
    if (entry.sha256 !== sha256 || st.size !== entry.bytes) return undefined;
    return toPrepared(cachePath, { ...entry, fileSha256: entry.fileSha256 ?? sha256Of(await fs.readFile(cachePath)) });
  } catch {
    return undefined;
  }
}

function toPrepared(cachePath: string, entry: CacheEntry & { fileSha256: string }): PreparedImage {
  return {
    path: cachePath,
    mime: 'image/jpeg',
    width: entry.width,
    height: entry.height,
    bytes: entry.bytes,
    dataUrlBytes: dataUrlLength('image/jpeg', entry.bytes),
    sha256: entry.sha256,
    fileSha256: entry.fileSha256,
    changes: entry.changes,
  };
}

function limitsKey(limits: ImageLimits): string {
  const { minSide, maxSide, maxDataUrlBytes, upscaleSmall } = limits;
  const key = JSON.stringify([RECIPE_VERSION, minSide, maxSide, maxDataUrlBytes, upscaleSmall]);
  return createHash('sha256').update(key).digest('hex').slice(0, 12);
}

function formatMb(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(bytes % (1024 * 1024) === 0 ? 0 : 1)} MB`;
}
