/** Checks shared by the fault tests: what a run leaves on disk, and whether it agrees with tasks.json. */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { probeVideo } from '../../src/media/video';
import { outputPaths, videosDir } from '../../src/runs/paths';
import { readTaskRecord, type TaskRecord } from '../../src/runs/taskRecord';

/** Half-written or temporary files under 08_generated_videos: download parts, atomic-write temps, lock folders. */
export async function leftovers(runDir: string): Promise<string[]> {
  const dir = videosDir(runDir);
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true });
  return entries.map(String).filter((f) => /\.part$|\.tmp$|\.lock(\/|$)/.test(f.split(path.sep).join('/')));
}

export interface Disagreement {
  key: string;
  problem: string;
}

/**
 * tasks.json against the files: a SUCCESS entry has a playable video and both thumbnails; any other entry has
 * none of them at the shot's canonical paths (a first take never leaves a file behind when it fails).
 */
export async function recordVersusDisk(runDir: string): Promise<{ record: TaskRecord; disagreements: Disagreement[] }> {
  const record = await readTaskRecord(runDir);
  const disagreements: Disagreement[] = [];
  for (const [key, entry] of Object.entries(record)) {
    const out = outputPaths(runDir, entry.episode, entry.shot);
    const files = [out.videoPath, out.thumbnailPath, out.smallThumbnailPath].map((f) => existsSync(f));
    if (entry.status === 'SUCCESS') {
      if (!files.every(Boolean)) disagreements.push({ key, problem: `SUCCESS but outputs missing (video, thumbnail, small: ${files.join(', ')})` });
      else {
        try {
          await probeVideo(out.videoPath);
        } catch (err) {
          disagreements.push({ key, problem: `SUCCESS but the video does not probe: ${(err as Error).message}` });
        }
      }
      if (entry.video_path !== path.relative(runDir, out.videoPath).split(path.sep).join('/')) disagreements.push({ key, problem: `video_path ${entry.video_path}` });
    } else if (files.some(Boolean) && entry.take === 1) {
      disagreements.push({ key, problem: `${entry.status} but outputs exist (video, thumbnail, small: ${files.join(', ')})` });
    }
  }
  return { record, disagreements };
}

/** A fixed-width text table, for results printed at the end of a suite. */
export function table(rows: Array<Record<string, string | number>>): string {
  if (rows.length === 0) return '(no rows)';
  const columns = Object.keys(rows[0]!);
  const width = (c: string) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(width(columns[i]!))).join(' | ');
  return [line(columns), columns.map((c) => '-'.repeat(width(c))).join('-|-'), ...rows.map((r) => line(columns.map((c) => String(r[c] ?? ''))))].join('\n');
}
