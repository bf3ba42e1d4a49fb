/**
 * Locating and running ffmpeg / ffprobe: FFMPEG_PATH / FFPROBE_PATH when set, else the binaries shipped by
 * the @ffmpeg-installer / @ffprobe-installer packages, else whatever `ffmpeg` / `ffprobe` PATH finds
 * (the installer packages throw on platforms they have no binary for).
 */
import { spawn } from 'node:child_process';
import ffmpeg from 'fluent-ffmpeg';
import { ConfigError } from '../errors';

let ffmpegBin: string | undefined;
let ffprobeBin: string | undefined;
let fluentConfigured = false;

export function ffmpegPath(): string {
  ffmpegBin ??= process.env.FFMPEG_PATH || installedBinary('@ffmpeg-installer/ffmpeg') || 'ffmpeg';
  return ffmpegBin;
}

export function ffprobePath(): string {
  ffprobeBin ??= process.env.FFPROBE_PATH || installedBinary('@ffprobe-installer/ffprobe') || 'ffprobe';
  return ffprobeBin;
}

/** fluent-ffmpeg, pointed at our binaries (configured on first use). */
export function fluentFfmpeg(): typeof ffmpeg {
  if (!fluentConfigured) {
    ffmpeg.setFfmpegPath(ffmpegPath());
    ffmpeg.setFfprobePath(ffprobePath());
    fluentConfigured = true;
  }
  return ffmpeg;
}

/** ffmpeg ran but exited unsuccessfully (bad input, usually). */
export class FfmpegError extends Error {
  override readonly name = 'FfmpegError';
  constructor(message: string, readonly stderr: string) {
    super(message);
  }
}

/**
 * Runs ffmpeg with `args`, feeding `input` on stdin when given, and resolves with everything it wrote to stdout.
 * Meant for small outputs (one encoded frame), which are collected in memory.
 */
export function runFfmpeg(args: string[], opts: { input?: Uint8Array; timeoutMs?: number } = {}): Promise<Buffer> {
  const bin = ffmpegPath();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['-hide_banner', '-loglevel', 'error', ...args], { stdio: 'pipe', windowsHide: true });
    const out: Buffer[] = [];
    let stderr = '';
    let settled = false;
    const finish = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(Buffer.concat(out));
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(new FfmpegError(`ffmpeg timed out after ${opts.timeoutMs ?? 60_000} ms`, stderr));
    }, opts.timeoutMs ?? 60_000);

    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      finish(err.code === 'ENOENT'
        ? new ConfigError(`ffmpeg was not found at "${bin}".`, 'Install ffmpeg or set FFMPEG_PATH to its full path.')
        : err);
    });
    child.on('close', (code, signal) => {
      if (code === 0) finish(undefined);
      else finish(new FfmpegError(`ffmpeg failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').pop() ?? ''}`, stderr));
    });
    // ffmpeg may stop reading early (it has what it needs, or gave up); that is not our error to report.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input);
  });
}

function installedBinary(pkg: string): string | undefined {
  try {
    // A runtime require: the package picks its platform sub-package when loaded, and throws if there is none.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require(pkg) as { path?: string }).path;
  } catch {
    return undefined;
  }
}
