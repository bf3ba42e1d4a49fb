/**
 * The submit request body (§2 of the API reference) with the image inline as a base64 data URL. From a file it
 * is streamed: the JSON around the image is built once and the image is encoded chunk by chunk as the request
 * is sent, so a submission holds one chunk of the image in memory instead of the file, its base64 and the JSON
 * (each as large as the image or larger, with several submissions at once).
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { GenerationParams } from '../config';
import type { SubmitRequestBody } from './types';

/**
 * The image to send: a data URL already built, or a prepared file to stream one from. With `sha256` (of the file
 * as prepared), a file whose content is no longer that is not sent.
 */
export type SubmitImage = { dataUrl: string } | { path: string; mime: string; sha256?: string };

export interface SubmitInput {
  image: SubmitImage;
  prompt: string;
  params: GenerationParams;
}

export interface SubmitBody {
  /** The JSON text, or its bytes as they are read (exactly `length` of them). */
  body: string | Readable;
  length: number;
  /** Releases the image file, once the request is over (whether or not the body was read). */
  close(): Promise<void>;
}

/**
 * Reading the image failed part-way, or it is not the file that was prepared: the request went out short of its
 * announced length, so the provider cannot have taken it. `changed`: the file's content differs from what was
 * prepared, which sending again would not fix.
 */
export class ImageReadError extends Error {
  override readonly name = 'ImageReadError';
  readonly changed: boolean;

  constructor(message: string, opts: { cause?: unknown; changed?: boolean } = {}) {
    super(message, { cause: opts.cause });
    this.changed = opts.changed ?? false;
  }
}

/** A multiple of 3, so every chunk but the last encodes to base64 without padding. */
const CHUNK_BYTES = 3 * 64 * 1024;

function dataUrlPrefix(mime: string): string {
  return `data:${mime.trim().toLowerCase()};base64,`;
}

/** Bytes in the data URL of an image of `bytes` bytes. */
export function dataUrlLength(mime: string, bytes: number): number {
  return dataUrlPrefix(mime).length + 4 * Math.ceil(bytes / 3);
}

export function toDataUrl(mime: string, bytes: Buffer): string {
  return `${dataUrlPrefix(mime)}${bytes.toString('base64')}`;
}

/** The documented request body: `duration` only when set, so a model's default applies otherwise. */
export function buildSubmitBody(input: { imageDataUrl: string; prompt: string; params: GenerationParams }): SubmitRequestBody {
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

/**
 * Opens the body. The file is opened and sized here, before anything is sent, so a missing or unreadable
 * prepared image fails without a request.
 */
export async function openSubmitBody(input: SubmitInput): Promise<SubmitBody> {
  const { image } = input;
  if ('dataUrl' in image) {
    const body = JSON.stringify(buildSubmitBody({ imageDataUrl: image.dataUrl, prompt: input.prompt, params: input.params }));
    return { body, length: Buffer.byteLength(body), close: async () => {} };
  }
  // Inside a JSON string every quote is escaped, so the empty value's unescaped `"img_url":""` occurs once.
  const json = JSON.stringify(buildSubmitBody({ imageDataUrl: '', prompt: input.prompt, params: input.params }));
  const key = json.indexOf('"img_url":""');
  if (key < 0) throw new Error('The submit body has no img_url to stream the image into');
  const at = key + '"img_url":"'.length;
  const head = Buffer.from(json.slice(0, at));
  const tail = Buffer.from(json.slice(at));
  const file = await open(image.path, 'r');
  let size: number;
  try {
    size = (await file.stat()).size;
  } catch (err) {
    await file.close();
    throw err;
  }
  const { mime, sha256: expectedSha256 } = image;
  async function* bytes(): AsyncGenerator<Buffer> {
    yield head;
    yield Buffer.from(dataUrlPrefix(mime));
    // Reads are sized to what is left (one byte past the end shows a file that grew), not a whole chunk each: a
    // small image then allocates its own size, not 192 KiB for the data and again for the end.
    yield* base64Chunks(file.createReadStream({ end: size, highWaterMark: CHUNK_BYTES, autoClose: false }), size, expectedSha256);
    yield tail;
  }
  return {
    body: Readable.from(bytes(), { objectMode: false }),
    length: head.length + dataUrlLength(mime, size) + tail.length,
    close: () => file.close(),
  };
}

/**
 * Base64 of a byte stream, in chunks that concatenate to the base64 of the whole: each chunk encodes a
 * multiple of 3 bytes and carries the rest over. Fails unless the stream holds exactly `expectedBytes` (the
 * request's length was announced from that) and, when given, hashes to `expectedSha256`. Both are checked
 * before the last chunk, so a failing body always ends short.
 */
export async function* base64Chunks(source: AsyncIterable<Buffer>, expectedBytes: number, expectedSha256?: string): AsyncGenerator<Buffer> {
  const hash = expectedSha256 ? createHash('sha256') : undefined;
  const chunks = source[Symbol.asyncIterator]();
  let carry: Buffer = Buffer.alloc(0);
  let read = 0;
  let ended = false;
  try {
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await chunks.next();
      } catch (err) {
        ended = true; // a failed stream has already closed itself
        throw new ImageReadError(`Reading the image failed: ${(err as Error).message}`, { cause: err });
      }
      if (next.done) {
        ended = true;
        break;
      }
      read += next.value.length;
      if (read > expectedBytes) break;
      hash?.update(next.value);
      const data = carry.length ? Buffer.concat([carry, next.value]) : next.value;
      const whole = data.length - (data.length % 3);
      carry = data.subarray(whole);
      if (whole) yield Buffer.from(data.subarray(0, whole).toString('base64'));
    }
  } finally {
    // Stopped early (too many bytes, or the request gave up on its body): stop reading, so the file can close.
    if (!ended) await chunks.return?.();
  }
  if (read !== expectedBytes) {
    const found = read > expectedBytes ? `more than its ${expectedBytes} bytes` : `${read} of its ${expectedBytes} bytes`;
    throw new ImageReadError(`The image changed while it was sent (${found})`);
  }
  if (hash && hash.digest('hex') !== expectedSha256) {
    throw new ImageReadError('The image file is not the one that was prepared (its content changed since)', { changed: true });
  }
  if (carry.length) yield Buffer.from(carry.toString('base64'));
}
