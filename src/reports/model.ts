/**
 * The report view model: one row per shot, per episode, with totals. Built once from the scan (every planned
 * shot, started or not), the task record and facts read from disk (video probes, thumbnails), and shared by
 * the Excel report and the HTML gallery so the two never disagree. Pure: data in, data out.
 */
import * as path from 'node:path';
import { estimateShotCost, formatMoney, priceOf, roundMoney } from '../pricing';
import type { Resolution } from '../provider/types';
import type { RunPlan } from '../runs/scan';
import { VIDEOS_DIR, episodeName, relativeToRun, shotName, taskKey } from '../runs/paths';
import type { TakeRecord, TaskRecord, TaskRecordEntry, TaskRecordStatus } from '../runs/taskRecord';

/** The task record's status, or NOT_STARTED for a planned shot that has no entry yet. */
export type ShotReportStatus = TaskRecordStatus | 'NOT_STARTED';

export interface Money {
  amount: number;
  currency: string;
}

/** What is on disk for one shot, gathered by the caller (see reports/index.ts). Paths are run-relative, `/`-separated. */
export interface ShotFiles {
  video?: { path: string; durationSeconds: number; width: number; height: number };
  /** The record points at a video that is absent or unreadable. */
  videoProblem?: string;
  /** The 150-px thumbnail. */
  thumbnail?: { path: string; width: number; height: number };
}

export interface ReportInputs {
  plan: RunPlan;
  records: TaskRecord;
  /** Keyed by task key (`Episode-01-001`). */
  files: ReadonlyMap<string, ShotFiles>;
  /** Assembled episode videos (`08_generated_videos/Episode-01.mp4`), run-relative, by episode number. */
  episodeVideos?: ReadonlyMap<number, string>;
  generatedAt: Date;
}

export interface ShotRow {
  key: string;
  episode: number;
  shot: number;
  /** `Episode-01-Shot-001`. */
  name: string;
  /** The prompt of the current take (the record's), else the planned one. */
  prompt: string;
  status: ShotReportStatus;
  /** False for a record entry whose image or prompt is no longer in the run folder. */
  planned: boolean;
  take?: number;
  taskId?: string;
  model?: string;
  /** The resolution tier asked for (480P, 720P, 1080P). */
  resolutionTier?: string;
  /** Run-relative, `/`-separated; only when the file exists. */
  videoPath?: string;
  thumbnail?: { path: string; width: number; height: number };
  /** Run-relative source image. */
  imagePath?: string;
  durationSeconds?: number;
  /** `1280×720`, from the video itself. */
  videoSize?: string;
  /** From submission to completion. */
  generationSeconds?: number;
  /**
   * What the shot has cost at list price over every finished take (failed tasks are not billed), from the
   * costs tasks.json records; one entry per currency, empty when nothing is billed or known.
   */
  cost: Money[];
  /** Finished (billed) takes, this one included. */
  paidTakes: number;
  /** Finished takes whose cost is unknown (no price for the model and resolution, or nothing to measure). */
  unpricedTakes: number;
  /** `[code] message` for failures; also says when a finished shot's video is missing on disk. */
  error?: string;
  submitTime?: string;
  completeTime?: string;
}

export interface ReportTotals {
  shots: number;
  done: number;
  failed: number;
  inProgress: number;
  notStarted: number;
  /** One entry per currency (normally one). */
  spend: Money[];
  /** Finished takes with no known cost (see ShotRow.unpricedTakes), so `spend` is a lower bound when > 0. */
  unpriced: number;
  videoSeconds: number;
  /** Sum of each finished shot's submission-to-completion time. */
  generationSeconds: number;
  /** Wall clock from the first submission to the last completion. */
  elapsedSeconds?: number;
}

export interface EpisodeReport {
  episode: number;
  /** `Episode-01`. */
  name: string;
  rows: ShotRow[];
  totals: ReportTotals;
  /** The assembled episode video, run-relative, when it exists. */
  episodeVideo?: string;
}

export interface RunReport {
  runDir: string;
  runId: string;
  generatedAt: Date;
  episodes: EpisodeReport[];
  totals: ReportTotals;
}

/** Where the report files live, run-relative. */
const REPORTS_DIR = VIDEOS_DIR;

export function buildRunReport(inputs: ReportInputs): RunReport {
  const { plan, records, files } = inputs;
  const rowsByEpisode = new Map<number, Map<number, ShotRow>>();
  const rowsOf = (episode: number): Map<number, ShotRow> => {
    let rows = rowsByEpisode.get(episode);
    if (!rows) rowsByEpisode.set(episode, (rows = new Map()));
    return rows;
  };

  for (const episode of plan.episodes) {
    const rows = rowsOf(episode.episode);
    for (const shot of episode.shots) {
      rows.set(shot.shot, shotRow(shot.episode, shot.shot, shot.prompt, relativeToRun(plan.runDir, shot.imagePath), true, records[shot.key], files.get(shot.key)));
    }
  }
  // Entries for shots the scan no longer finds still cost money and may have videos: show them too.
  for (const [key, entry] of Object.entries(records)) {
    const id = identityOf(key, entry);
    if (!id) continue;
    const rows = rowsOf(id.episode);
    if (!rows.has(id.shot)) rows.set(id.shot, shotRow(id.episode, id.shot, entry.prompt ?? '', entry.image_path ?? undefined, false, entry, files.get(key)));
  }

  const episodes: EpisodeReport[] = [...rowsByEpisode.keys()]
    .sort((a, b) => a - b)
    .map((episode) => {
      const rows = [...rowsByEpisode.get(episode)!.values()].sort((a, b) => a.shot - b.shot);
      return { episode, name: episodeName(episode), rows, totals: totalsOf(rows), episodeVideo: inputs.episodeVideos?.get(episode) };
    });
  return {
    runDir: plan.runDir,
    runId: plan.runId,
    generatedAt: inputs.generatedAt,
    episodes,
    totals: totalsOf(episodes.flatMap((e) => e.rows)),
  };
}

/**
 * A run-relative path as a link from a file in `08_generated_videos/` (where both reports live):
 * `08_generated_videos/Episode-01/x.mp4` → `Episode-01/x.mp4`, `05_generated_images/...` → `../05_generated_images/...`.
 * Absolute paths (outside the run folder) stay absolute.
 */
export function linkFromReports(runRelative: string): string {
  if (path.posix.isAbsolute(runRelative) || path.win32.isAbsolute(runRelative)) return runRelative;
  return path.posix.relative(REPORTS_DIR, runRelative);
}

/** `YYYY-MM-DD HH:MM:SS` in local time (as tasks.json stores times) → epoch ms, or undefined. */
export function parseLocalTime(text: string | null | undefined): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})/.exec(text ?? '');
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const t = new Date(y, mo - 1, d, h, mi, s).getTime();
  return Number.isFinite(t) ? t : undefined;
}

/** `1 h 02 min`, `3 min 05 s`, `42 s`. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '';
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const p = (n: number): string => String(n).padStart(2, '0');
  if (h > 0) return `${h} h ${p(m)} min`;
  if (m > 0) return `${m} min ${p(s)} s`;
  return `${s} s`;
}

/** `¥12.30`; several currencies are joined with ` + `; nothing spent is `0`. */
export function formatSpend(spend: readonly Money[]): string {
  if (spend.length === 0) return '0';
  return spend.map((m) => formatMoney(m.amount, m.currency)).join(' + ');
}

function shotRow(
  episode: number,
  shot: number,
  plannedPrompt: string,
  imagePath: string | undefined,
  planned: boolean,
  entry: TaskRecordEntry | undefined,
  files: ShotFiles | undefined,
): ShotRow {
  const row: ShotRow = {
    key: taskKey(episode, shot),
    episode,
    shot,
    name: shotName(episode, shot),
    prompt: entry?.prompt || plannedPrompt,
    status: entry?.status ?? 'NOT_STARTED',
    planned,
    imagePath,
    thumbnail: files?.thumbnail,
    cost: [],
    paidTakes: 0,
    unpricedTakes: 0,
  };
  if (!entry) return row;
  row.take = entry.take;
  row.taskId = entry.task_id ?? undefined;
  row.model = entry.model;
  row.resolutionTier = entry.resolution;
  row.submitTime = entry.submit_time ?? undefined;
  row.completeTime = entry.complete_time ?? undefined;
  const submitted = parseLocalTime(entry.submit_time);
  const completed = parseLocalTime(entry.complete_time);
  if (submitted !== undefined && completed !== undefined && completed >= submitted && (entry.status === 'SUCCESS' || entry.status === 'FAILED')) {
    row.generationSeconds = (completed - submitted) / 1000;
  }
  if (files?.video) {
    row.videoPath = files.video.path;
    row.durationSeconds = files.video.durationSeconds;
    row.videoSize = `${files.video.width}×${files.video.height}`;
  }
  if (entry.status === 'FAILED') {
    row.error = `[${entry.error_code ?? 'error'}] ${entry.error_message ?? 'no message'}`;
  } else if (entry.status === 'SUCCESS' && files?.videoProblem) {
    row.error = files.videoProblem;
  }
  Object.assign(row, costOf(entry, files));
  return row;
}

/** The shot's spend over its finished takes: each take's recorded cost, else (current take) one computed from its video. */
function costOf(entry: TaskRecordEntry, files: ShotFiles | undefined): Pick<ShotRow, 'cost' | 'paidTakes' | 'unpricedTakes'> {
  // Records written before takes were listed describe the current take only.
  const takes: ReadonlyArray<Pick<TakeRecord, 'take' | 'status' | 'cost' | 'currency'>> = entry.takes?.length
    ? entry.takes
    : [{ take: entry.take, status: entry.status, cost: entry.cost ?? null, currency: entry.currency }];
  const spend = new Map<string, number>();
  let paidTakes = 0;
  let unpricedTakes = 0;
  for (const take of takes) {
    if (take.status !== 'SUCCESS') continue;
    paidTakes++;
    const money = recordedCost(entry, take) ?? (take.take === entry.take ? measuredCost(entry, files) : undefined);
    if (money) spend.set(money.currency, (spend.get(money.currency) ?? 0) + money.amount);
    else unpricedTakes++;
  }
  return { cost: moneyList(spend), paidTakes, unpricedTakes };
}

function recordedCost(entry: TaskRecordEntry, take: Pick<TakeRecord, 'cost' | 'currency'>): Money | undefined {
  if (typeof take.cost !== 'number') return undefined;
  const currency = take.currency ?? entry.currency ?? (entry.model && entry.resolution ? priceOf(entry.model, entry.resolution)?.currency : undefined);
  return currency ? { amount: take.cost, currency } : undefined;
}

/**
 * For a take recorded without its cost: list price × the video's length, in whole seconds as the API bills
 * them (usage.video_duration; a 5 s clip may probe as 5.0625 s). prompt_extend does not change the price.
 */
function measuredCost(entry: TaskRecordEntry, files: ShotFiles | undefined): Money | undefined {
  if (!files?.video || !entry.model || !isResolution(entry.resolution)) return undefined;
  const seconds = Math.max(1, Math.round(files.video.durationSeconds));
  const cost = estimateShotCost({ model: entry.model, resolution: entry.resolution, promptExtend: true, duration: seconds });
  return cost && { amount: cost.amount, currency: cost.currency };
}

function moneyList(byCurrency: ReadonlyMap<string, number>): Money[] {
  return [...byCurrency].sort(([a], [b]) => a.localeCompare(b)).map(([currency, amount]) => ({ currency, amount: roundMoney(amount) }));
}

function totalsOf(rows: readonly ShotRow[]): ReportTotals {
  const spend = new Map<string, number>();
  let unpriced = 0;
  let videoSeconds = 0;
  let generationSeconds = 0;
  let first: number | undefined;
  let last: number | undefined;
  for (const row of rows) {
    for (const m of row.cost) spend.set(m.currency, (spend.get(m.currency) ?? 0) + m.amount);
    unpriced += row.unpricedTakes;
    if (row.status === 'SUCCESS') videoSeconds += row.durationSeconds ?? 0;
    generationSeconds += row.status === 'SUCCESS' ? row.generationSeconds ?? 0 : 0;
    const submitted = parseLocalTime(row.submitTime);
    const completed = parseLocalTime(row.completeTime);
    if (submitted !== undefined) first = Math.min(first ?? submitted, submitted);
    if (completed !== undefined) last = Math.max(last ?? completed, completed);
  }
  const count = (f: (r: ShotRow) => boolean): number => rows.filter(f).length;
  return {
    shots: rows.length,
    done: count((r) => r.status === 'SUCCESS'),
    failed: count((r) => r.status === 'FAILED'),
    inProgress: count((r) => r.status !== 'SUCCESS' && r.status !== 'FAILED' && r.status !== 'NOT_STARTED'),
    notStarted: count((r) => r.status === 'NOT_STARTED'),
    spend: moneyList(spend),
    unpriced,
    videoSeconds: Math.round(videoSeconds * 1000) / 1000,
    generationSeconds,
    elapsedSeconds: first !== undefined && last !== undefined && last >= first ? (last - first) / 1000 : undefined,
  };
}

/** The entry's own episode and shot numbers, else those in its key; undefined for keys that are not shots. */
function identityOf(key: string, entry: TaskRecordEntry): { episode: number; shot: number } | undefined {
  if (Number.isSafeInteger(entry.episode) && Number.isSafeInteger(entry.shot)) return { episode: entry.episode, shot: entry.shot };
  const m = /^Episode-(\d+)-(\d+)$/.exec(key);
  return m ? { episode: Number(m[1]), shot: Number(m[2]) } : undefined;
}

function isResolution(value: string | undefined): value is Resolution {
  return value === '480P' || value === '720P' || value === '1080P';
}
