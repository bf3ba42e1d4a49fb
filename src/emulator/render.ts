/**
 * Renders each successful task's MP4 from its submitted image with ffmpeg: a real H.264 file whose first
 * frame is the image, sized like the provider's output (input aspect ratio, tier pixel count, sides multiple
 * of 16). The video is a still image: frame 0 must equal the input, and motion would only cost CPU.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import sharp from 'sharp';
import type { Resolution } from '../provider/types';
import { TIER_PIXELS } from './models';
import type { RenderedVideo } from './tasks';
import type { ImageMime } from './validate';

export interface FrameSize {
  width: number;
  height: number;
}

/** Keeps the input's aspect ratio at about the tier's pixel count; both sides are rounded to multiples of 16. */
export function outputFrameSize(width: number, height: number, resolution: Resolution): FrameSize {
  const pixels = TIER_PIXELS[resolution];
  const aspect = width / height;
  const roundTo16 = (n: number): number => Math.max(16, Math.round(n / 16) * 16);
  return { width: roundTo16(Math.sqrt(pixels * aspect)), height: roundTo16(Math.sqrt(pixels / aspect)) };
}

/** options.ffmpegPath, else FFMPEG_PATH, else the static build shipped by @ffmpeg-installer/ffmpeg. */
export async function resolveFfmpegPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (explicit) return explicit;
  if (env.FFMPEG_PATH) return env.FFMPEG_PATH;
  // Loaded lazily: the installer throws on platforms it has no binary for, even when a path was configured.
  return (await import('@ffmpeg-installer/ffmpeg')).path;
}

/** Why a render failed, as the provider error code the task ends FAILED with. */
export class RenderFailure extends Error {
  override readonly name = 'RenderFailure';
  constructor(
    readonly code: 'InvalidParameter' | 'InternalError',
    message: string,
  ) {
    super(message);
  }
}

export interface RenderJob {
  taskId: string;
  /** The staged input image (see Renderer.stage). */
  imagePath: string;
  mime: ImageMime;
  size: FrameSize;
  seconds: number;
  fps: number;
}

/** At most `concurrency` renders run at once (each ffmpeg with 2 threads); the rest wait their turn. */
export class Renderer {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly children = new Set<ChildProcess>();
  private readonly jobs = new Set<Promise<unknown>>();
  private closed = false;

  constructor(
    private readonly ffmpegPath: string,
    private readonly workDir: string,
    private readonly concurrency = 2,
    /** Run ffmpeg at the lowest CPU priority (nice 19), so it only takes CPU nothing else wants. */
    private readonly lowPriority = false,
  ) {}

  /** Writes a submitted image to the work dir, so a queued job holds a path rather than megabytes of memory. */
  async stage(taskId: string, bytes: Buffer, mime: ImageMime): Promise<string> {
    const imagePath = path.join(this.workDir, `${taskId}.input.${mime.slice('image/'.length)}`);
    await writeFile(imagePath, bytes);
    return imagePath;
  }

  render(job: RenderJob): Promise<RenderedVideo> {
    const done = this.withSlot(() => this.run(job));
    this.jobs.add(done);
    const untrack = (): void => {
      this.jobs.delete(done);
    };
    done.then(untrack, untrack);
    return done;
  }

  /** Drops queued jobs, kills running ffmpeg processes and waits until every job has settled. */
  async close(): Promise<void> {
    this.closed = true;
    for (const wake of this.waiting.splice(0)) wake();
    for (const child of this.children) child.kill('SIGKILL');
    await Promise.allSettled([...this.jobs]);
  }

  private async withSlot<T>(fn: () => Promise<T>): Promise<T> {
    while (!this.closed && this.active >= this.concurrency) await new Promise<void>((wake) => this.waiting.push(wake));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }

  private async run(job: RenderJob): Promise<RenderedVideo> {
    const output = path.join(this.workDir, `${job.taskId}.mp4`);
    // Written under a temporary name and renamed when complete, so a half-rendered file is never served.
    const partial = `${output}.part`;
    // sharp has no BMP decoder, but ffmpeg reads BMP directly; everything else is normalised to a plain PNG
    // (which also proves the whole file decodes, not only its header).
    const frame = job.mime === 'image/bmp' ? job.imagePath : path.join(this.workDir, `${job.taskId}.frame.png`);
    try {
      this.throwIfClosed();
      if (frame !== job.imagePath) await decodeToPng(job.imagePath, frame);
      this.throwIfClosed();
      await this.ffmpeg(ffmpegArgs(frame, partial, job));
      await rename(partial, output);
      return { path: output, bytes: (await stat(output)).size };
    } finally {
      await Promise.all([job.imagePath, frame, partial].map((f) => rm(f, { force: true })));
    }
  }

  private throwIfClosed(): void {
    if (this.closed) throw new RenderFailure('InternalError', 'the emulator is shutting down');
  }

  private ffmpeg(args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.ffmpegPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      this.children.add(child);
      if (this.lowPriority && child.pid !== undefined) {
        try {
          os.setPriority(child.pid, 19);
        } catch {
          // Not permitted here: it runs at normal priority.
        }
      }
      let stderrTail = '';
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
        stderrTail = (stderrTail + chunk).slice(-2000);
      });
      child.once('error', (err) => {
        this.children.delete(child);
        reject(new RenderFailure('InternalError', `cannot run ffmpeg (${this.ffmpegPath}): ${err.message}`));
      });
      child.once('close', (code, signal) => {
        this.children.delete(child);
        if (code === 0) resolve();
        else reject(new RenderFailure('InternalError', `ffmpeg exited with ${signal ?? `code ${code}`}: ${stderrTail.trim()}`));
      });
    });
  }
}

async function decodeToPng(input: string, output: string): Promise<void> {
  try {
    await sharp(input).png({ compressionLevel: 1 }).toFile(output);
  } catch (err) {
    throw new RenderFailure('InvalidParameter', `the image could not be decoded: ${(err as Error).message}`);
  }
}

function ffmpegArgs(frame: string, output: string, job: RenderJob): string[] {
  const { size, seconds, fps } = job;
  return [
    '-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
    '-loop', '1', '-framerate', String(fps), '-i', frame,
    '-t', String(seconds),
    '-vf', `scale=${size.width}:${size.height}:flags=bicubic,setsar=1,format=yuv420p`,
    '-an',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'stillimage', '-pix_fmt', 'yuv420p', '-r', String(fps),
    '-threads', '2',
    '-movflags', '+faststart',
    '-f', 'mp4', output,
  ];
}
