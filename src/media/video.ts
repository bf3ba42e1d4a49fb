/** Video facts (ffprobe) and first-frame thumbnails (ffmpeg). */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { FfprobeData } from 'fluent-ffmpeg';
import { FfmpegError, fluentFfmpeg, runFfmpeg } from './binaries';
import { produceFileAtomic } from '../atomic';
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
 * Writes the first frame as a PNG at the video's size, and an 8-bit copy `smallWidth` px wide (aspect kept), in
 * one ffmpeg run: the frame is decoded, scaled and encoded there, not in this process. Each file is written to a
 * temp name and renamed, so neither final path ever holds a half-written PNG (the small one is renamed first).
 * A video ffmpeg cannot read is VideoInvalidError; failing to write the PNGs (a full disk) is an ordinary error.
 */
export async function extractThumbnails(
  videoPath: string,
  thumbnailPath: string,
  smallThumbnailPath: string,
  smallWidth = 150,
): Promise<Thumbnails> {
  const name = path.basename(videoPath);
  await fs.access(videoPath);
  const size = await produceFileAtomic(thumbnailPath, (full) =>
    produceFileAtomic(smallThumbnailPath, async (small) => {
      try {
        await withCpuSlot(() => runFfmpeg([
          '-nostdin', '-n', '-i', videoPath,
          '-filter_complex', `[0:v:0]split=2[full][in];[in]scale=${smallWidth}:-1:flags=lanczos,format=pix_fmts=rgb24|rgba[small]`,
          ...pngOutput('[full]', full), ...pngOutput('[small]', small),
        ]));
      } catch (err) {
        if (!(err instanceof FfmpegError)) throw err;
        if (writeFailed(err.stderr, [full, small])) throw new Error(`Could not write the thumbnails of ${name}: ${err.message}`);
        throw new VideoInvalidError(`Cannot read a frame from ${name}: ${err.message}`);
      }
      // No frame to decode leaves ffmpeg nothing to write, and it may still exit 0.
      const written = await pngSize(full);
      if (!written || !(await pngSize(small))) throw new VideoInvalidError(`${name} has no frames.`);
      return written;
    }));
  return { thumbnailPath, smallThumbnailPath, ...size };
}

/** One frame of the filter graph's `label` as a PNG file (`file:` and `-update`, so no name is read as a protocol or pattern). */
function pngOutput(label: string, file: string): string[] {
  return ['-map', label, '-frames:v', '1', '-c:v', 'png', '-f', 'image2', '-update', '1', `file:${path.resolve(file)}`];
}

/** ffmpeg's complaint is about the files it writes (it names one, or a write failed), not about the video. */
function writeFailed(stderr: string, outputs: readonly string[]): boolean {
  return outputs.some((file) => stderr.includes(path.basename(file))) || WRITE_ERROR.test(stderr);
}

const WRITE_ERROR = /av_interleaved_write_frame|Error writing trailer|No space left on device|Read-only file system|Disk quota exceeded/i;

/** A PNG's size from its header (the IHDR chunk), or undefined when the file is missing, short or not a PNG. */
async function pngSize(file: string): Promise<{ width: number; height: number } | undefined> {
  let header: Buffer;
  try {
    const handle = await fs.open(file, 'r');
    try {
      ({ buffer: header } = await handle.read(Buffer.alloc(24), 0, 24, 0));
    } finally {
      await handle.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (!header.subarray(0, 8).equals(PNG_SIGNATURE) || header.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  const width = header.readUInt32BE(16);
  const height = header.readUInt32BE(20);
  return width > 0 && height > 0 ? { width, height } : undefined;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

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
