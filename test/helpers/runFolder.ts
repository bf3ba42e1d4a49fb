/** Builds run folders on disk for tests: real images (sharp) and prompt files. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { scratchDir } from './scratch';

export interface ShotFixture {
  episode: number;
  shot: number;
  prompt: string;
  width?: number;
  height?: number;
}

export async function makeRunFolder(shots: ShotFixture[], name = 'run'): Promise<string> {
  const root = await scratchDir('i2v-test-');
  const runDir = path.join(root, name);
  const byEpisode = new Map<number, ShotFixture[]>();
  for (const s of shots) byEpisode.set(s.episode, [...(byEpisode.get(s.episode) ?? []), s]);
  for (const [episode, list] of byEpisode) {
    const ep = `Episode-${String(episode).padStart(2, '0')}`;
    await mkdir(path.join(runDir, '05_generated_images', ep), { recursive: true });
    await mkdir(path.join(runDir, '07_video_prompts'), { recursive: true });
    for (const s of list) {
      // Opaque, like real generated stills (the API rejects PNG with alpha; preparation has its own tests).
      await sharp(sceneImage(s.episode * 10 + s.shot, s.width ?? 640, s.height ?? 360)).removeAlpha().png().toFile(
        path.join(runDir, '05_generated_images', ep, `${ep}-Shot-${String(s.shot).padStart(3, '0')}.png`),
      );
    }
    const prompts = list.map((s) => `Shot ${String(s.shot).padStart(3, '0')}: ${s.prompt}`).join('\n');
    await writeFile(path.join(runDir, '07_video_prompts', `${ep}-Video-Prompts.txt`), prompts + '\n');
  }
  return runDir;
}

/** A distinct picture per seed: colour blocks, so a first frame can be compared with its source. */
export function sceneImage(seed: number, width: number, height: number): Buffer {
  const hue = (seed * 47) % 360;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
    <rect width="${width}" height="${height}" fill="hsl(${hue},60%,40%)"/>
    <rect x="${width * 0.1}" y="${height * 0.2}" width="${width * 0.35}" height="${height * 0.5}" fill="hsl(${(hue + 120) % 360},70%,60%)"/>
    <circle cx="${width * 0.7}" cy="${height * 0.45}" r="${height * 0.25}" fill="hsl(${(hue + 240) % 360},80%,55%)"/>
  </svg>`;
  return Buffer.from(svg);
}

/** Mean absolute difference per channel (0–255) between two images, compared at 32×18. */
export async function imageDistance(a: string | Buffer, b: string | Buffer): Promise<number> {
  const small = (img: string | Buffer) => sharp(img).removeAlpha().resize(32, 18, { fit: 'fill' }).raw().toBuffer();
  const [x, y] = await Promise.all([small(a), small(b)]);
  let total = 0;
  for (let i = 0; i < x.length; i++) total += Math.abs((x[i] ?? 0) - (y[i] ?? 0));
  return total / x.length;
}
