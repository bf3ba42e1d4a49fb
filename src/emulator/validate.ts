/**
 * Validation of a submit request body against the reference (§2 request, §3 image constraints, §5 error codes).
 * Returns either a normalised submission or the ApiError the real service would answer with.
 */
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import type { Resolution } from '../provider/types';
import { apiError, invalidParameter, type ApiError } from './apiError';
import { MODELS } from './models';

export type ImageMime = 'image/png' | 'image/jpeg' | 'image/webp' | 'image/bmp';

export interface SubmittedImage {
  /** The decoded file bytes (the base64 payload). */
  bytes: Buffer;
  mime: ImageMime;
  width: number;
  height: number;
  sha256: string;
}

export interface ValidSubmission {
  model: string;
  resolution: Resolution;
  /** Requested seconds of video (the model's default when omitted). */
  duration: number;
  /** The prompt as submitted. */
  prompt: string;
  /** The prompt after the model's silent truncation. */
  actualPrompt: string;
  image: SubmittedImage;
}

export type ValidationResult = { ok: true; submission: ValidSubmission } | { ok: false; error: ApiError };

/** The whole `data:...;base64,...` string; whether the real limit counts encoded or raw bytes is undocumented. */
export const MAX_DATA_URL_CHARS = 10 * 1024 * 1024;
const MIN_SIDE_PX = 360;
const MAX_SIDE_PX = 2000;
const MAX_SEED = 2_147_483_647;

const ACCEPTED_MIMES: ReadonlySet<string> = new Set<ImageMime>(['image/png', 'image/jpeg', 'image/webp', 'image/bmp']);

export async function validateSubmission(body: unknown): Promise<ValidationResult> {
  const fail = (error: ApiError): ValidationResult => ({ ok: false, error });

  if (!isRecord(body)) return fail(invalidParameter('The request body must be a JSON object.'));
  const { model, input, parameters = {} } = body;

  if (typeof model !== 'string' || model === '') return fail(apiError(400, 'BadRequest.EmptyModel', 'Required parameter "model" missing from request.'));
  const spec = MODELS.get(model);
  if (!spec) return fail(apiError(404, 'ModelNotFound', `Model not exist: ${model}.`));

  if (!isRecord(input)) return fail(apiError(400, 'BadRequest.EmptyInput', 'Required parameter "input" missing from request.'));
  const { img_url: imgUrl, prompt = '' } = input;
  if (imgUrl === undefined || imgUrl === '') return fail(apiError(400, 'BadRequest.EmptyInput', 'Required parameter "input.img_url" missing from request.'));
  if (typeof imgUrl !== 'string') return fail(invalidParameter('input.img_url must be a string.'));
  if (typeof prompt !== 'string') return fail(invalidParameter('input.prompt must be a string.'));

  if (!isRecord(parameters)) return fail(invalidParameter('parameters must be an object.'));
  const { resolution = spec.defaultResolution, duration = spec.defaultDuration, seed } = parameters;
  if (typeof resolution !== 'string' || !(spec.resolutions as readonly string[]).includes(resolution)) {
    return fail(invalidParameter(`parameters.resolution ${JSON.stringify(resolution)} is not supported by ${model} (allowed: ${spec.resolutions.join(', ')}).`));
  }
  if (typeof duration !== 'number' || !spec.durations.includes(duration)) {
    return fail(invalidParameter(`parameters.duration ${JSON.stringify(duration)} is not supported by ${model} (allowed: ${spec.durations.join(', ')}).`));
  }
  if (seed !== undefined && !(Number.isInteger(seed) && (seed as number) >= 0 && (seed as number) <= MAX_SEED)) {
    return fail(invalidParameter(`parameters.seed must be an integer in [0, ${MAX_SEED}].`));
  }

  const image = await decodeDataUrlImage(imgUrl);
  if ('code' in image) return fail(image);

  const chars = Array.from(prompt);
  const actualPrompt = chars.length > spec.promptMaxChars ? chars.slice(0, spec.promptMaxChars).join('') : prompt;
  return { ok: true, submission: { model, resolution: resolution as Resolution, duration, prompt, actualPrompt, image } };
}

/** Parses, decodes and checks the first-frame image (§3): format, size limits, pixel bounds, no PNG alpha. */
async function decodeDataUrlImage(url: string): Promise<SubmittedImage | ApiError> {
  if (/^(https?|oss):\/\//i.test(url)) {
    return invalidParameter('url images are not supported by the emulator; send input.img_url as a data:image/...;base64, URL.');
  }
  if (url.length > MAX_DATA_URL_CHARS) {
    return invalidParameter(`The image data URL is ${url.length} bytes; the limit is 10 MB.`);
  }
  const header = /^data:(image\/[a-z0-9.+-]+);base64,/i.exec(url);
  if (!header?.[1]) return invalidParameter('input.img_url must be a data:image/{png|jpeg|webp|bmp};base64,... URL.');
  const declared = header[1].toLowerCase();
  if (!ACCEPTED_MIMES.has(declared)) return invalidParameter(`Unsupported image format ${declared} (use PNG, JPEG, WEBP or BMP).`);

  const payload = url.slice(header[0].length);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(payload)) return invalidParameter('The image data is not valid base64.');
  const bytes = Buffer.from(payload, 'base64');

  const actual = sniffMime(bytes);
  if (actual !== declared) {
    return invalidParameter(`input.img_url declares ${declared} but the data is ${actual ?? 'not a recognised image'}.`);
  }
  const mime = actual;

  const info = await readImageInfo(bytes, mime);
  if (!info) return invalidParameter('The image could not be decoded.');
  const { width, height } = info;
  if (width < MIN_SIDE_PX || height < MIN_SIDE_PX || width > MAX_SIDE_PX || height > MAX_SIDE_PX) {
    return invalidParameter(`The image is ${width}x${height}; width and height must each be in [${MIN_SIDE_PX}, ${MAX_SIDE_PX}] px.`);
  }
  if (mime === 'image/png' && info.hasAlpha) return invalidParameter('PNG images with an alpha channel are not supported.');

  return { bytes, mime, width, height, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** The image type by its magic bytes. */
function sniffMime(bytes: Buffer): ImageMime | undefined {
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  if (bytes.toString('latin1', 0, 4) === 'RIFF' && bytes.toString('latin1', 8, 12) === 'WEBP') return 'image/webp';
  if (bytes.toString('latin1', 0, 2) === 'BM') return 'image/bmp';
  return undefined;
}

interface ImageInfo {
  width: number;
  height: number;
  hasAlpha: boolean;
}

async function readImageInfo(bytes: Buffer, mime: ImageMime): Promise<ImageInfo | undefined> {
  // sharp (libvips) has no BMP loader; ffmpeg, which renders it, does.
  if (mime === 'image/bmp') return readBmpInfo(bytes);
  try {
    const meta = await sharp(bytes).metadata();
    if (!meta.width || !meta.height) return undefined;
    return { width: meta.width, height: meta.height, hasAlpha: meta.hasAlpha };
  } catch {
    return undefined;
  }
}

/**
 * Reads a BMP header and checks the pixel array is present (uncompressed variants), which is as much
 * "decoding" as validation needs. Handles BITMAPCOREHEADER (12 bytes) and BITMAPINFOHEADER and later (≥ 40).
 */
function readBmpInfo(bytes: Buffer): ImageInfo | undefined {
  if (bytes.length < 26) return undefined;
  const pixelOffset = bytes.readUInt32LE(10);
  const dibSize = bytes.readUInt32LE(14);
  if (dibSize === 12) {
    return { width: bytes.readUInt16LE(18), height: bytes.readUInt16LE(20), hasAlpha: false };
  }
  if (dibSize < 40 || bytes.length < 14 + dibSize) return undefined;
  const width = bytes.readInt32LE(18);
  const height = Math.abs(bytes.readInt32LE(22)); // negative means top-down rows
  const bitsPerPixel = bytes.readUInt16LE(28);
  const compression = bytes.readUInt32LE(30);
  if (width <= 0 || height === 0 || ![1, 4, 8, 16, 24, 32].includes(bitsPerPixel)) return undefined;
  const BI_RGB = 0;
  const BI_BITFIELDS = 3;
  if (compression === BI_RGB || compression === BI_BITFIELDS) {
    const rowBytes = Math.ceil((width * bitsPerPixel) / 32) * 4;
    if (pixelOffset + rowBytes * height > bytes.length) return undefined;
  }
  return { width, height, hasAlpha: false };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
