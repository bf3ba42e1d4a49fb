/**
 * Writes both reports of a run, `08_generated_videos/report.xlsx` and `08_generated_videos/index.html`, from
 * one view model. Reads the scan, tasks.json and the files on disk (video probes, thumbnails); called at the
 * end of each episode and by `i2v report`.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { episodeVideoPath } from '../media/assemble';
import { probeVideo, VideoInvalidError } from '../media/video';
import { withFileLock } from '../runs/lock';
import { outputPaths, relativeToRun, videosDir } from '../runs/paths';
import { scanRun } from '../runs/scan';
import { readTaskRecord, type TaskRecordEntry } from '../runs/taskRecord';
import { EXCEL_REPORT_NAME, writeExcelReport } from './excel';
import { writeGallery } from './gallery';
import { buildRunReport, type RunReport, type ShotFiles } from './model';

export interface WrittenReports {
  excelPath: string;
  galleryPath: string;
  report: RunReport;
}

/** ffprobe runs at once, at most. */
const PROBE_CONCURRENCY = 4;

/**
 * Builds the report model and writes both files (each to a temp name, then renamed). Two episodes ending at
 * once take turns, so the files on disk are always from the later, fuller view of tasks.json.
 */
export async function writeReports(runDir: string, opts: { now?: Date } = {}): Promise<WrittenReports> {
  const realRunDir = await fs.realpath(runDir).catch(() => path.resolve(runDir));
  return withFileLock(path.join(videosDir(realRunDir), EXCEL_REPORT_NAME), async () => {
    const report = await loadRunReport(runDir, opts);
    const excelPath = await writeExcelReport(report.runDir, report);
    const galleryPath = await writeGallery(report.runDir, report);
    return { excelPath, galleryPath, report };
  });
}

/** The report model for a run as it is on disk now. */
export async function loadRunReport(runDir: string, opts: { now?: Date } = {}): Promise<RunReport> {
  const plan = await scanRun(runDir);
  const records = await readTaskRecord(plan.runDir);
  const files = new Map<string, ShotFiles>();
  await forEachLimited(Object.entries(records), PROBE_CONCURRENCY, async ([key, entry]) => {
    files.set(key, await shotFiles(plan.runDir, entry));
  });
  const episodes = new Set([...plan.episodes.map((e) => e.episode), ...Object.values(records).map((e) => e.episode).filter(Number.isSafeInteger)]);
  const episodeVideos = new Map<number, string>();
  for (const episode of episodes) {
    const file = episodeVideoPath(plan.runDir, episode);
    if (await isFile(file)) episodeVideos.set(episode, relativeToRun(plan.runDir, file));
  }
  return buildRunReport({ plan, records, files, episodeVideos, generatedAt: opts.now ?? new Date() });
}

/** The entry's video (probed) and small thumbnail, as far as they exist. */
async function shotFiles(runDir: string, entry: TaskRecordEntry): Promise<ShotFiles> {
  const out: ShotFiles = {};
  const abs = (p: string): string => (path.isAbsolute(p) ? p : path.join(runDir, ...p.split('/')));
  if (entry.video_path) {
    try {
      const info = await probeVideo(abs(entry.video_path));
      out.video = { path: entry.video_path, durationSeconds: info.durationSeconds, width: info.width, height: info.height };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') out.videoProblem = `Video file missing on disk: ${entry.video_path}`;
      else if (err instanceof VideoInvalidError) out.videoProblem = `Video unreadable: ${err.message}`;
      else throw err;
    }
  }
  if (entry.thumbnail_path) {
    const small = smallThumbnailOf(runDir, entry);
    try {
      const { width, height } = await sharp(abs(small)).metadata();
      if (width && height) out.thumbnail = { path: small, width, height };
    } catch {
      // No small thumbnail (or not an image): the row simply has no picture.
    }
  }
  return out;
}

/** `...-thumbnail.png` → `...-thumbnail-small.png` (written beside it by makeThumbnails), run-relative. */
function smallThumbnailOf(runDir: string, entry: TaskRecordEntry): string {
  const full = entry.thumbnail_path ?? '';
  if (/-thumbnail\.png$/.test(full)) return full.replace(/-thumbnail\.png$/, '-thumbnail-small.png');
  return relativeToRun(runDir, outputPaths(runDir, entry.episode, entry.shot).smallThumbnailPath);
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isFile();
  } catch {
    return false;
  }
}

async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
