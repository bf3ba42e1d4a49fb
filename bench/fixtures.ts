/**
 * Run folders for the benchmark: one episode of N shots, each with a distinct image (the pipeline refuses
 * duplicate images) and a distinct prompt.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { seededRandom } from '../src/emulator/random';

/**
 * `scene`: a blocky 640×360 PNG (a few KB), acceptable as it is. `bytes`: a noise image of about that many bytes,
 * which the pipeline prepares before sending it whatever its size (see noiseJpeg), so that sizes can be compared.
 */
export type ImageKind = 'scene' | { bytes: number };

export interface RunFolder {
  runDir: string;
  /** Input image sizes in bytes, in shot order. */
  imageBytes: number[];
}

export async function makeRunFolder(root: string, shots: number, image: ImageKind, seed: number): Promise<RunFolder> {
  const runDir = path.join(root, 'bench-run');
  const ep = 'Episode-01';
  const imagesDir = path.join(runDir, '05_generated_images', ep);
  await mkdir(imagesDir, { recursive: true });
  await mkdir(path.join(runDir, '07_video_prompts'), { recursive: true });
  const imageBytes: number[] = [];
  for (let shot = 1; shot <= shots; shot++) {
    const { data, ext } = await shotImage(image, seed * 100_003 + shot);
    await writeFile(path.join(imagesDir, `${ep}-Shot-${String(shot).padStart(3, '0')}.${ext}`), data);
    imageBytes.push(data.length);
  }
  const prompts = Array.from({ length: shots }, (_, i) => `Shot ${String(i + 1).padStart(3, '0')}: 镜头 ${i + 1}，镜头缓慢推进，人物转身看向窗外。`);
  await writeFile(path.join(runDir, '07_video_prompts', `${ep}-Video-Prompts.txt`), `${prompts.join('\n')}\n`);
  return { runDir, imageBytes };
}

async function shotImage(kind: ImageKind, seed: number): Promise<{ data: Buffer; ext: string }> {
  if (kind === 'scene') return { data: await sceneImage(seed), ext: 'png' };
  return kind.bytes >= 2_000_000 ? { data: await noisePng(kind.bytes, seed), ext: 'png' } : { data: await noiseJpeg(kind.bytes, seed), ext: 'jpg' };
}

/** Random colours on a 16×9 grid of 40-px blocks (640×360): distinct per seed, and a few KB as PNG. */
async function sceneImage(seed: number): Promise<Buffer> {
  return sharp(randomPixels(16, 9, seed), { raw: { width: 16, height: 9, channels: 3 } })
    .resize(640, 360, { kernel: 'nearest' })
    .png()
    .toBuffer();
}

/** Full-range RGB noise does not compress: a 2000-px-wide PNG of it has about 3 bytes per pixel. */
async function noisePng(bytes: number, seed: number): Promise<Buffer> {
  const width = 2000;
  const height = Math.max(360, Math.min(2000, Math.round(bytes / (3 * width))));
  return sharp(randomPixels(width, height, seed), { raw: { width, height, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
}

/**
 * A 640×360 noise JPEG, its quality searched so the file lands near `bytes`, stored sideways (EXIF orientation 6).
 * Turning it upright makes the pipeline prepare it before sending it, as it must a 9 MB image (too big for the API
 * as it is): with the same steps for both sizes, only their size differs. An image sent as it is skips that step.
 */
async function noiseJpeg(bytes: number, seed: number): Promise<Buffer> {
  const pixels = randomPixels(640, 360, seed);
  const encode = (quality: number) => sharp(pixels, { raw: { width: 640, height: 360, channels: 3 } }).jpeg({ quality }).withMetadata({ orientation: 6 }).toBuffer();
  let [lo, hi] = [1, 100];
  let best = await encode(50);
  while (lo <= hi) {
    const q = Math.floor((lo + hi) / 2);
    const data = await encode(q);
    if (Math.abs(data.length - bytes) < Math.abs(best.length - bytes)) best = data;
    if (data.length < bytes) lo = q + 1;
    else hi = q - 1;
  }
  return best;
}

function randomPixels(width: number, height: number, seed: number): Buffer {
  const random = seededRandom(seed);
  const buf = Buffer.alloc(width * height * 3);
  for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((random() * 4294967296) >>> 0, Math.min(i, buf.length - 4));
  return buf;
}
