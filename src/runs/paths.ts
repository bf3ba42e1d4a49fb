/**
 * The run-folder naming scheme: the one place that knows how episodes, shots, takes, inputs and outputs are
 * named. Pure (string and path arithmetic only).
 *
 *   <runDir>/05_generated_images/Episode-01/Episode-01-Shot-001.png      inputs (png jpg jpeg webp bmp)
 *   <runDir>/07_video_prompts/Episode-01-Video-Prompts.txt
 *   <runDir>/08_generated_videos/Episode-01/Episode-01-Shot-001.mp4       outputs
 *   <runDir>/08_generated_videos/tasks.json                               task record read by studio tools
 *   <runDir>/08_generated_videos/.i2v/                                    internal state
 */
import * as path from 'node:path';

export const IMAGES_DIR = '05_generated_images';
export const PROMPTS_DIR = '07_video_prompts';
export const VIDEOS_DIR = '08_generated_videos';
export const TASKS_JSON = 'tasks.json';
const INTERNAL_DIR = '.i2v';

/** Image types the provider accepts, lower case, without the dot. */
export const IMAGE_EXTENSIONS: readonly string[] = ['png', 'jpg', 'jpeg', 'webp', 'bmp'];

/** `Episode-01` (2 digits minimum; wider numbers are kept as they are). */
export function episodeName(episode: number): string {
  return `Episode-${pad(episode, 2)}`;
}

/** `Episode-01-Shot-001`: the stem of a shot's image and video files. */
export function shotName(episode: number, shot: number): string {
  return `${episodeName(episode)}-Shot-${pad(shot, 3)}`;
}

/** `Episode-01-001`: the shot's key in tasks.json, as the original tool wrote it. */
export function taskKey(episode: number, shot: number): string {
  return `${episodeName(episode)}-${pad(shot, 3)}`;
}

/** `Episode-01-Video-Prompts.txt` */
export function promptFileName(episode: number): string {
  return `${episodeName(episode)}-Video-Prompts.txt`;
}

export function imagesDir(runDir: string): string {
  return path.join(runDir, IMAGES_DIR);
}

export function promptsDir(runDir: string): string {
  return path.join(runDir, PROMPTS_DIR);
}

export function videosDir(runDir: string): string {
  return path.join(runDir, VIDEOS_DIR);
}

export function promptFilePath(runDir: string, episode: number): string {
  return path.join(promptsDir(runDir), promptFileName(episode));
}

export interface OutputPaths {
  episodeDir: string;
  videoPath: string;
  /** First frame, full size. */
  thumbnailPath: string;
  /** First frame, 150 px wide, for reports. */
  smallThumbnailPath: string;
}

/** Where a shot's outputs go (the current take's; earlier takes are the activities' business). */
export function outputPaths(runDir: string, episode: number, shot: number): OutputPaths {
  const episodeDir = path.join(videosDir(runDir), episodeName(episode));
  const stem = shotName(episode, shot);
  return {
    episodeDir,
    videoPath: path.join(episodeDir, `${stem}.mp4`),
    thumbnailPath: path.join(episodeDir, `${stem}-thumbnail.png`),
    smallThumbnailPath: path.join(episodeDir, `${stem}-thumbnail-small.png`),
  };
}

export function tasksJsonPath(runDir: string): string {
  return path.join(videosDir(runDir), TASKS_JSON);
}

/** Internal state that is not part of the studio-facing layout. */
export function internalDir(runDir: string): string {
  return path.join(videosDir(runDir), INTERNAL_DIR);
}

/** Images resized/re-encoded for submission, named by content hash. */
export function preparedCacheDir(runDir: string): string {
  return path.join(internalDir(runDir), 'prepared');
}

/** The submission journal (one file per shot take); see journal.ts. */
export function journalDir(runDir: string): string {
  return path.join(internalDir(runDir), 'journal');
}

/**
 * `p` relative to the run folder with `/` separators (`05_generated_images/Episode-01/...png`), as tasks.json
 * stores paths. A path outside the run folder is returned absolute (still with `/`).
 */
export function relativeToRun(runDir: string, p: string): string {
  const rel = path.relative(runDir, p);
  const outside = rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel);
  return toPosix(outside ? path.resolve(p) : rel);
}

export interface ParsedImageName {
  episode: number;
  shot: number;
  /** Lower case, without the dot. */
  extension: string;
}

const IMAGE_NAME = /^Episode-(\d+)-Shot-(\d+)\.([^.]+)$/;
const EPISODE_DIR_NAME = /^Episode-(\d+)$/;

/**
 * `Episode-01-Shot-001.PNG` → { episode: 1, shot: 1, extension: 'png' }. Numbers are read by value
 * (`Episode-1-Shot-1.png` is the same shot); the extension may be any case but must be a supported type.
 * Returns undefined for anything else.
 */
export function parseImageName(fileName: string): ParsedImageName | undefined {
  const m = IMAGE_NAME.exec(fileName);
  if (!m) return undefined;
  const extension = m[3]!.toLowerCase();
  const episode = Number(m[1]);
  const shot = Number(m[2]);
  if (!IMAGE_EXTENSIONS.includes(extension) || !Number.isSafeInteger(episode) || !Number.isSafeInteger(shot)) return undefined;
  return { episode, shot, extension };
}

/** `Episode-01` (or `Episode-1`) → 1; anything else → undefined. */
export function parseEpisodeDirName(dirName: string): number | undefined {
  const m = EPISODE_DIR_NAME.exec(dirName);
  const episode = m ? Number(m[1]) : NaN;
  return Number.isSafeInteger(episode) ? episode : undefined;
}

function pad(n: number, width: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`Expected a non-negative integer, got ${n}`);
  return String(n).padStart(width, '0');
}

function toPosix(p: string): string {
  return path.sep === '/' ? p : p.split(path.sep).join('/');
}
