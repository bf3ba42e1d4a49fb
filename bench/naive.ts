/**
 * The naive baseline, for comparison: what one would write without Temporal. Submit every shot at once,
 * check each task every `pollIntervalMs`, download finished videos with a pool of `downloadWorkers`, cut the
 * first frame with ffmpeg. Plain async TypeScript with the project's provider client and media helpers (so the
 * per-file work is the same as the pipeline's, and only the orchestration differs). No durability, no retries.
 *
 * Runs as its own process (`node naive.js <config.json>`) so its memory and CPU are measured apart from the
 * emulator; prints one JSON line with its timings.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { GenerationParams } from '../src/config';
import { DEFAULTS } from '../src/config';
import { extractThumbnails } from '../src/media/video';
import { downloadVideo } from '../src/media/download';
import { createProviderClient, toDataUrl } from '../src/provider/client';
import { processUsage, type ProcessUsage } from './measure';

export interface NaiveConfig {
  runDir: string;
  baseUrl: string;
  apiKey: string;
  generation: GenerationParams;
  pollIntervalMs: number;
  downloadWorkers: number;
}

export interface NaiveShot {
  name: string;
  taskId?: string;
  /** When the shot's video and thumbnail were written (ms since the epoch). */
  doneAt?: number;
  downloadMs?: number;
  thumbnailMs?: number;
  error?: string;
}

export interface NaiveResult {
  startedAt: number;
  finishedAt: number;
  shots: NaiveShot[];
  usage: ProcessUsage;
}

const MIME: Record<string, string> = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg' };

export async function runNaive(config: NaiveConfig): Promise<NaiveResult> {
  const episodeDir = path.join(config.runDir, '05_generated_images', 'Episode-01');
  const names = (await readdir(episodeDir)).sort();
  const prompts = await readPrompts(path.join(config.runDir, '07_video_prompts', 'Episode-01-Video-Prompts.txt'));
  const outDir = path.join(config.runDir, 'naive-output');
  const client = createProviderClient({ kind: 'emulator', baseUrl: config.baseUrl, apiKey: config.apiKey, asyncHeader: false, requestTimeoutMs: 60_000 });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const ready: Array<{ shot: NaiveShot; videoUrl: string }> = [];
  // Idle downloaders wait here; every change (a video ready, a shot given up) wakes them all.
  const waiters: Array<() => void> = [];
  const wake = () => waiters.splice(0).forEach((resume) => resume());
  let polling = names.length;
  const startedAt = Date.now();

  const shots: NaiveShot[] = names.map((name) => ({ name: path.parse(name).name }));
  const pollers = names.map(async (file, i) => {
    const shot = shots[i]!;
    try {
      const bytes = await readFile(path.join(episodeDir, file));
      const prompt = prompts.get(shotNumber(file)) ?? '';
      const submitted = await client.submit({ image: { dataUrl: toDataUrl(MIME[path.extname(file).toLowerCase()] ?? 'image/png', bytes) }, prompt, params: config.generation });
      shot.taskId = submitted.taskId;
      for (;;) {
        await sleep(config.pollIntervalMs);
        const state = await client.getTask(submitted.taskId);
        if (!state.done) continue;
        if (!state.succeeded || !state.videoUrl) throw new Error(`task ended ${state.status} ${state.code ?? ''}`);
        ready.push({ shot, videoUrl: state.videoUrl });
        wake();
        break;
      }
    } catch (err) {
      shot.error = (err as Error).message;
    } finally {
      polling--;
      wake();
    }
  });

  const downloaders = Array.from({ length: config.downloadWorkers }, async () => {
    for (;;) {
      const job = ready.shift();
      if (!job) {
        if (polling === 0) return;
        await new Promise<void>((resume) => waiters.push(resume));
        continue;
      }
      try {
        const started = Date.now();
        const video = path.join(outDir, `${job.shot.name}.mp4`);
        await downloadVideo(job.videoUrl, video, { maxBytes: DEFAULTS.maxVideoBytes });
        const downloaded = Date.now();
        await extractThumbnails(video, path.join(outDir, `${job.shot.name}-thumbnail.png`), path.join(outDir, `${job.shot.name}-thumbnail-small.png`));
        job.shot.doneAt = Date.now();
        job.shot.downloadMs = downloaded - started;
        job.shot.thumbnailMs = job.shot.doneAt - downloaded;
      } catch (err) {
        job.shot.error = (err as Error).message;
      }
    }
  });
  await Promise.all(pollers);
  await Promise.all(downloaders);
  const finishedAt = Date.now();
  await client.close();
  return { startedAt, finishedAt, shots, usage: processUsage('self') };
}

function shotNumber(file: string): number {
  return Number(/-Shot-(\d+)\./.exec(file)?.[1] ?? NaN);
}

async function readPrompts(file: string): Promise<Map<number, string>> {
  const prompts = new Map<number, string>();
  for (const line of (await readFile(file, 'utf8')).split('\n')) {
    const m = /^Shot (\d+): (.*)$/.exec(line);
    if (m) prompts.set(Number(m[1]), m[2] ?? '');
  }
  return prompts;
}

if (require.main === module) {
  const [configFile, resultFile] = process.argv.slice(2);
  if (!configFile || !resultFile) throw new Error('usage: naive.js <config.json> <result.json>');
  readFile(configFile, 'utf8')
    .then((text) => runNaive(JSON.parse(text) as NaiveConfig))
    .then((result) => writeFile(resultFile, JSON.stringify(result)))
    .then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
}
