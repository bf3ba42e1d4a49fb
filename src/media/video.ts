/** Video facts (ffprobe) and first-frame thumbnails (ffmpeg + sharp). */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { FfprobeData } from 'fluent-ffmpeg';
import sharp from 'sharp';
import { FfmpegError, fluentFfmpeg, runFfmpeg } from './binaries';
import { writeFileAtomic } from '../atomic';
import { withCpuSlot } from './cpuSlots';

/** The file is not a playable video: unreadable, no video stream, or no duration. */
export class VideoInvalidError extends Error {
  override readonly name = 'VideoInvalidError';
  readonly code = 'video-invalid';
}

export interface VideoInfo {
  durationSeconds: number;
  width: number;
  height: number;
  codec: string;
  fps: number;
  bytes: number;
}

export interface Thumbnails {
  thumbnailPath: string;
  smallThumbnailPath: string;
  width: number;
  height: number;
}

/** A missing file is an ordinary fs error (ENOENT); anything ffprobe cannot make sense of is VideoInvalidError. */
export async function probeVideo(videoPath: string): Promise<VideoInfo> {
  const name = path.basename(videoPath);
  const st = await fs.stat(videoPath);
  if (!st.isFile()) throw new VideoInvalidError(`${name} is not a file.`);

  const data = await new Promise<FfprobeData>((resolve, reject) => {
    fluentFfmpeg().ffprobe(videoPath, ['-v', 'error'], (err: unknown, result: FfprobeData) => {
      if (!err) resolve(result);
      else if (err instanceof Error && /^ffprobe (exited|was killed)/.test(err.message)) {
        reject(new VideoInvalidError(`${name} is not a readable video: ${lastLine(err.message)}`));
      } else reject(err);
    });
  });

  const stream = data.streams.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
  if (!stream) throw new VideoInvalidError(`${name} has no video stream.`);
  const durationSeconds = positive(data.format.duration) ?? positive(stream.duration);
  if (durationSeconds === undefined) throw new VideoInvalidError(`${name} has no duration.`);
  const width = positive(stream.width);
  const height = positive(stream.height);
  if (width === undefined || height === undefined) throw new VideoInvalidError(`${name} has no picture size.`);
  return {
    durationSeconds,
    width,
    height,
    codec: stream.codec_name ?? 'unknown',
    fps: frameRate(stream.avg_frame_rate) ?? frameRate(stream.r_frame_rate) ?? 0,
    bytes: st.size,
  };
}

/**
 * Writes the first frame as a PNG at the video's size, and a copy `smallWidth` px wide (aspect kept).
 * Each is written to a temp name and renamed, so a final path never holds a half-written PNG.
 */
export async function extractThumbnails(
  videoPath: string,
  thumbnailPath: string,
  smallThumbnailPath: string,
  smallWidth = 150,
): Promise<Thumbnails> {
  const name = path.basename(videoPath);
  await fs.access(videoPath);
  const { png, small, width, height } = await withCpuSlot(async () => {
    let frame: Buffer;
    try {
      frame = await runFfmpeg(['-i', videoPath, '-map', '0:v:0', '-frames:v', '1', '-c:v', 'png', '-f', 'image2pipe', 'pipe:1']);
    } catch (err) {
      if (err instanceof FfmpegError) throw new VideoInvalidError(`Cannot read a frame from ${name}: ${err.message}`);
      throw err;
    }
    if (frame.length === 0) throw new VideoInvalidError(`${name} has no frames.`);
    const meta = await sharp(frame).metadata();
    if (!meta.width || !meta.height) throw new VideoInvalidError(`${name} gave an empty first frame.`);
    return { png: frame, small: await sharp(frame).resize({ width: smallWidth }).png().toBuffer(), width: meta.width, height: meta.height };
  });
  await writeFileAtomic(thumbnailPath, png);
  await writeFileAtomic(smallThumbnailPath, small);
  return { thumbnailPath, smallThumbnailPath, width, height };
}

function positive(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/** ffprobe rates look like "30/1" or "30000/1001"; "0/0" means unknown. */
function frameRate(rate: string | undefined): number | undefined {
  if (!rate) return undefined;
  const [num, den] = rate.split('/').map(Number);
  const fps = den === undefined ? num : num !== undefined && den ? num / den : undefined;
  return fps !== undefined && Number.isFinite(fps) && fps > 0 ? Math.round(fps * 1000) / 1000 : undefined;
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return (lines[lines.length - 1] ?? text).trim();
}
