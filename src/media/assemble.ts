/**
 * Episode assembly: an episode's finished shots, in shot order, joined into `08_generated_videos/Episode-NN.mp4`.
 *
 * When every clip has the same stream parameters (codec, profile, size, frame rate, pixel format, and the same
 * audio or none) they are joined with the concat demuxer and `-c copy`: fast and lossless. Otherwise every clip
 * is re-encoded, one at a time, to the most common size and frame rate (letterboxed when its aspect differs,
 * silent audio added where a clip has none) and the normalised clips are then joined the same way. One ffmpeg
 * per clip keeps memory flat for long episodes, where a single concat filter would open a decoder per shot at once.
 *
 * Shots without a finished video (not started, failed, in progress, file gone or unreadable) are left out of the
 * file and listed in the result, never skipped silently. The output is written to a temp name, checked with
 * ffprobe (its duration must match the clips'), and renamed into place.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { syncDir, syncFile } from '../atomic';
import { InputError } from '../errors';
import { episodeName, outputPaths, relativeToRun, taskKey, videosDir, internalDir } from '../runs/paths';
import { scanRun } from '../runs/scan';
import { readTaskRecord } from '../runs/taskRecord';
import { FfmpegError, ffprobePath, runFfmpeg } from './binaries';
import { probeVideo, VideoInvalidError } from './video';

export interface MissingShot {
  /** tasks.json key, `Episode-01-003`. */
  key: string;
  reason: string;
}

export interface AssembleResult {
  /** The assembled video; absent when no shot had a video. */
  path?: string;
  /** Clips in the file. */
  clips: number;
  missing: MissingShot[];
  /** True when the clips' parameters differed and they were re-encoded to a common format. */
  reencoded: boolean;
  durationSeconds?: number;
}

/** ffmpeg could not join the clips, or what it wrote failed the checks; the previous episode file is untouched. */
export class AssembleError extends Error {
  override readonly name = 'AssembleError';
}

/** Per clip, the assembled duration may differ from the clip's by this much (frame rounding, audio priming). */
const DURATION_TOLERANCE_PER_CLIP_S = 0.1;

export function episodeVideoPath(runDir: string, episode: number): string {
  return path.join(videosDir(runDir), `${episodeName(episode)}.mp4`);
}

export async function assembleEpisode(runDir: string, episode: number): Promise<AssembleResult> {
  const plan = await scanRun(runDir);
  const root = plan.runDir;
  const records = await readTaskRecord(root);

  // Every shot the run knows of for this episode: planned ones and any the task record still has.
  const planned = plan.episodes.find((e) => e.episode === episode);
  const shots = new Set(planned?.shots.map((s) => s.shot));
  for (const entry of Object.values(records)) if (entry.episode === episode) shots.add(entry.shot);
  if (!planned && shots.size === 0) {
    throw new InputError(`${episodeName(episode)} has no images, prompts or task record entries in ${root}.`, 'episode-missing');
  }

  const clips: Clip[] = [];
  const missing: MissingShot[] = [];
  for (const shot of [...shots].sort((a, b) => a - b)) {
    const key = taskKey(episode, shot);
    const entry = records[key];
    if (!entry) {
      missing.push({ key, reason: 'not started' });
      continue;
    }
    if (entry.status === 'FAILED') {
      missing.push({ key, reason: `failed: [${entry.error_code ?? 'error'}] ${entry.error_message ?? 'no message'}` });
      continue;
    }
    if (entry.status !== 'SUCCESS') {
      missing.push({ key, reason: `not finished (${entry.status})` });
      continue;
    }
    const file = entry.video_path
      ? path.isAbsolute(entry.video_path) ? entry.video_path : path.join(root, ...entry.video_path.split('/'))
      : outputPaths(root, episode, shot).videoPath;
    try {
      clips.push({ key, file, ...(await probeClip(file)) });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') missing.push({ key, reason: `video file missing: ${relativeToRun(root, file)}` });
      else if (err instanceof VideoInvalidError) missing.push({ key, reason: `video unreadable: ${err.message}` });
      else throw err;
    }
  }
  if (clips.length === 0) return { clips: 0, missing, reencoded: false };

  const target = episodeVideoPath(root, episode);
  const workDir = path.join(internalDir(root), `assemble-${episodeName(episode)}-${randomBytes(4).toString('hex')}`);
  await fs.mkdir(workDir, { recursive: true });
  // Same folder as the target, so the final rename stays on one filesystem; a dot name keeps it out of listings.
  // Not produceFileAtomic's name, which runs/sweep.ts removes once it looks abandoned: a long join, or the fsync of a
  // large file, can leave it untouched for longer than a sweep on another host sharing the folder waits.
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(4).toString('hex')}.tmp.mp4`);
  const expected = clips.reduce((sum, c) => sum + c.durationSeconds, 0);
  try {
    const reencoded = new Set(clips.map((c) => c.signature)).size > 1;
    try {
      const parts = reencoded ? await normaliseClips(clips, workDir) : clips.map((c) => c.file);
      await concatCopy(parts, path.join(workDir, 'list.txt'), tmp, expected);
    } catch (err) {
      if (err instanceof FfmpegError) throw new AssembleError(`Could not assemble ${path.basename(target)}: ${err.message}`);
      throw err;
    }

    const out = await probeVideo(tmp).catch((err: unknown) => {
      throw new AssembleError(`The assembled ${path.basename(target)} is not readable: ${(err as Error).message}`);
    });
    const tolerance = DURATION_TOLERANCE_PER_CLIP_S * clips.length;
    if (Math.abs(out.durationSeconds - expected) > tolerance) {
      throw new AssembleError(`The assembled ${path.basename(target)} lasts ${out.durationSeconds.toFixed(2)} s; its ${clips.length} clip(s) last ${expected.toFixed(2)} s.`);
    }
    // ffmpeg closes its output without fsync; flush it before the rename makes it the episode file.
    await syncFile(tmp);
    await fs.rename(tmp, target);
    await syncDir(path.dirname(target));
    return { path: target, clips: clips.length, missing, reencoded, durationSeconds: out.durationSeconds };
  } finally {
    await fs.rm(tmp, { force: true });
    await fs.rm(workDir, { recursive: true, force: true });
  }
}

interface ClipParams {
  durationSeconds: number;
  width: number;
  height: number;
  /** `30/1`, as ffprobe gives it. */
  frameRate: string;
  hasAudio: boolean;
  /** Everything that must be equal for a lossless join. */
  signature: string;
}

interface Clip extends ClipParams {
  key: string;
  file: string;
}

interface ProbeStream {
  codec_type?: string;
  codec_name?: string;
  profile?: string;
  width?: number;
  height?: number;
  pix_fmt?: string;
  r_frame_rate?: string;
  avg_frame_rate?: string;
  sample_rate?: string;
  channels?: number;
  disposition?: { attached_pic?: number };
}

async function probeClip(file: string): Promise<ClipParams> {
  const info = await probeVideo(file);
  const streams = await probeStreams(file);
  const video = streams.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
  const audio = streams.find((s) => s.codec_type === 'audio');
  if (!video) throw new VideoInvalidError(`${path.basename(file)} has no video stream.`);
  const frameRate = validRate(video.r_frame_rate) ?? validRate(video.avg_frame_rate) ?? '30/1';
  const signature = JSON.stringify([
    video.codec_name, video.profile, info.width, info.height, frameRate, video.pix_fmt,
    audio ? [audio.codec_name, audio.sample_rate, audio.channels] : null,
  ]);
  return { durationSeconds: info.durationSeconds, width: info.width, height: info.height, frameRate, hasAudio: !!audio, signature };
}

function probeStreams(file: string): Promise<ProbeStream[]> {
  return new Promise((resolve, reject) => {
    execFile(ffprobePath(), ['-v', 'error', '-show_streams', '-of', 'json', file], { maxBuffer: 4 * 1024 * 1024, windowsHide: true }, (err, stdout) => {
      if (err) {
        reject(new VideoInvalidError(`ffprobe cannot read ${path.basename(file)}: ${err.message.trim().split('\n').pop() ?? ''}`));
        return;
      }
      try {
        resolve(((JSON.parse(stdout) as { streams?: ProbeStream[] }).streams) ?? []);
      } catch {
        reject(new VideoInvalidError(`ffprobe gave no stream list for ${path.basename(file)}.`));
      }
    });
  });
}

/** Re-encodes each clip to the most common size and frame rate (H.264 yuv420p, and AAC when any clip has sound). */
async function normaliseClips(clips: readonly Clip[], workDir: string): Promise<string[]> {
  const [width, height] = mostCommon(clips.map((c) => `${c.width}x${c.height}`)).split('x').map(Number) as [number, number];
  const frameRate = mostCommon(clips.map((c) => c.frameRate));
  const withAudio = clips.some((c) => c.hasAudio);
  const out: string[] = [];
  for (const [i, clip] of clips.entries()) {
    const file = path.join(workDir, `clip-${String(i).padStart(5, '0')}.mp4`);
    const video = `scale=${width}:${height}:force_original_aspect_ratio=decrease,pad=${width}:${height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=${frameRate},format=yuv420p`;
    const args = ['-y', '-i', clip.file];
    if (withAudio && !clip.hasAudio) args.push('-f', 'lavfi', '-i', 'anullsrc=channel_layout=stereo:sample_rate=48000');
    args.push('-map', '0:v:0', '-vf', video, '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '18');
    if (withAudio) {
      args.push('-map', clip.hasAudio ? '0:a:0' : '1:a:0', '-af', 'aresample=48000,aformat=channel_layouts=stereo,apad', '-c:a', 'aac', '-b:a', '160k');
      // apad / anullsrc are endless: stop at the clip's own length.
      args.push('-t', clip.durationSeconds.toFixed(3));
    } else {
      args.push('-an');
    }
    args.push('-f', 'mp4', file);
    await runFfmpeg(args, { timeoutMs: ffmpegTimeoutMs(clip.durationSeconds) });
    out.push(file);
  }
  return out;
}

/** Joins files that share every stream parameter, without re-encoding. */
async function concatCopy(files: readonly string[], listFile: string, output: string, totalSeconds: number): Promise<void> {
  // The concat demuxer's list syntax: one `file '<path>'` per line, a quote written as '\''.
  const list = files.map((f) => `file '${path.resolve(f).replace(/'/g, "'\\''")}'`).join('\n');
  await fs.writeFile(listFile, `${list}\n`);
  await runFfmpeg(['-y', '-f', 'concat', '-safe', '0', '-i', listFile, '-map', '0:v', '-map', '0:a?', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4', output], {
    timeoutMs: ffmpegTimeoutMs(totalSeconds / 20),
  });
}

/** Generous: a slow machine re-encodes 720p at a fraction of real time. */
function ffmpegTimeoutMs(mediaSeconds: number): number {
  return 60_000 + Math.ceil(mediaSeconds * 20_000);
}

function validRate(rate: string | undefined): string | undefined {
  const [num, den] = (rate ?? '').split('/').map(Number);
  return num && den && Number.isFinite(num / den) ? rate : undefined;
}

/** The most frequent value; ties go to the one seen first (the earliest shot). */
function mostCommon(values: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0]!;
  for (const [v, n] of counts) if (n > counts.get(best)!) best = v;
  return best;
}
