/**
 * Temporal activities: thin adapters from workflow calls to the provider client, media and run-folder code.
 * Built by a factory so the worker (and tests) decide the dependencies. Arguments and results are small
 * JSON: paths, hashes, ids. Image bytes are read here, inside `submitTask`, and never leave it.
 */
import { rename, mkdir, access } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { GenerationParams } from '../config';
import { InputError, ProviderError, redact } from '../errors';
import { CLIENT_ERROR_CODES, type ProviderClient } from '../provider/client';
import { prepareImage, type ImageLimits, DEFAULT_IMAGE_LIMITS } from '../media/image';
import { downloadVideo, DownloadError } from '../media/download';
import { extractThumbnails } from '../media/video';
import { outputPaths, preparedCacheDir, relativeToRun, videosDir } from '../runs/paths';
import { sweepLeftovers } from '../runs/sweep';
import { awaitSubmitSlot, SLOT_HOLD_MS } from '../runs/pacer';
import { clearSubmissionStarted, markSubmissionStarted, readSubmission, recordSubmission, SubmissionExistsError, type JournalEntry } from '../runs/journal';
import { formatLocalTime, moveTakeVideo, readTaskRecord, takeAt, updateTaskRecord } from '../runs/taskRecord';
import { estimateShotCost, priceOf, roundMoney } from '../pricing';
import { writeReportsInChild } from '../reports/child';
import { metrics } from '../metrics';
import type { ShotSpec } from '../workflows/types';

export interface ActivityDeps {
  provider: ProviderClient;
  /** Secrets to scrub from every message that leaves an activity. */
  secrets: string[];
  imageLimits?: ImageLimits;
  maxVideoBytes: number;
  smallThumbnailWidth: number;
  /** Paid submissions per second per run folder, across workers sharing it (undefined: no pacing). */
  submitsPerSecond?: number;
  /** Injectable clock (tests). */
  now?: () => Date;
}

/** An input image, and whether images under the API's minimum size may be enlarged. */
export interface ImageSource {
  imagePath: string;
  upscaleSmall?: boolean;
}

/** What submitTask sends: a file prepareImage made, or the original to prepare right before it is sent. */
export type SubmitImage =
  /** `sha256`: of the file as prepared; a file that no longer has it is not sent. */
  | { image: { path: string; mime: string; sha256?: string }; source?: never }
  /** An image the pre-flight found acceptable as it is (ShotWorkflowInput.imageAsIs). */
  | { source: ImageSource; image?: never };

export type ShotRecordUpdate =
  | { kind: 'submitted'; taskId: string }
  | { kind: 'succeeded'; taskId: string; videoUrl: string; videoPath: string; thumbnailPath: string; billedSeconds?: number }
  | { kind: 'failed'; taskId?: string; taskStatus?: string; errorCode: string; errorMessage: string };

export function createActivities(deps: ActivityDeps) {
  const now = deps.now ?? (() => new Date());
  const clean = (text: string) => redact(text, deps.secrets);
  const prepare = (runDir: string, source: ImageSource) => {
    const limits = { ...(deps.imageLimits ?? DEFAULT_IMAGE_LIMITS), ...(source.upscaleSmall ? { upscaleSmall: true } : {}) };
    return prepareImage(source.imagePath, preparedCacheDir(runDir), limits);
  };
  const prepareToSend = async (runDir: string, source: ImageSource) => {
    const prepared = await prepare(runDir, source);
    return { path: prepared.path, mime: prepared.mime, sha256: prepared.fileSha256 };
  };

  return {
    /** Makes the image acceptable to the API (format, size, pixel limits); returns where the prepared copy is. */
    async prepareImage(args: ImageSource & { runDir: string }) {
      return guard(clean, async () => {
        const prepared = await prepare(args.runDir, args);
        return { path: prepared.path, mime: prepared.mime, width: prepared.width, height: prepared.height, bytes: prepared.bytes, sha256: prepared.sha256, fileSha256: prepared.fileSha256, changes: prepared.changes };
      });
    },

    /**
     * Submits one shot take, at most once. The journal entry is written before the POST ('started') and right
     * after it returns (task id), so a retry after a crash re-uses the task instead of paying again, and a POST
     * whose outcome is unknown stops here instead of being repeated blindly.
     */
    async submitTask(args: SubmitImage & {
      runDir: string;
      submissionKey: string;
      prompt: string;
      generation: GenerationParams;
      /** 'fail' (default): stop on an unknown outcome. 'resubmit': accept the risk of paying twice. */
      onUncertain?: UncertainSubmitPolicy;
      /** Also record the task in `tasks.json` once it exists (one step less for the workflow). */
      record?: { shot: ShotSpec; generation: GenerationParams };
    }) {
      const attemptStarted = now().getTime();
      const submitOnce = async (): Promise<{ taskId: string; reused: boolean; elapsedSinceSubmitMs: number }> => {
        const previous = await readSubmission(args.runDir, args.submissionKey);
        const sinceSubmit = (entry: JournalEntry) => Math.max(0, now().getTime() - Date.parse(entry.submittedAt ?? entry.startedAt));
        if (previous?.state === 'submitted' && previous.taskId) {
          return { taskId: previous.taskId, reused: true, elapsedSinceSubmitMs: sinceSubmit(previous) };
        }
        const resubmit = args.onUncertain === 'resubmit';
        if (previous?.state === 'started' && !resubmit) {
          throw uncertain('A previous submission of this take was sent but its outcome is unknown (crash, timeout or reset)');
        }
        // An original goes through the same preparation here, once nothing was paid for yet: for an image that
        // needs no changes, a full decode that fails a truncated file (InputError) before anything is sent.
        const image = args.source ? await prepareToSend(args.runDir, args.source) : args.image;
        const slot = deps.submitsPerSecond ? await awaitSubmitSlot(args.runDir, deps.submitsPerSecond) : undefined;
        stillInTime(now().getTime() - attemptStarted);
        try {
          await markSubmissionStarted(args.runDir, args.submissionKey, now(), { replaceStarted: resubmit });
        } catch (err) {
          // Another attempt of this take got there first (an attempt that timed out but is still running).
          if (!(err instanceof SubmissionExistsError)) throw err;
          const entry = err.entry;
          if (entry.state === 'submitted' && entry.taskId) return { taskId: entry.taskId, reused: true, elapsedSinceSubmitMs: sinceSubmit(entry) };
          throw uncertain('Another attempt of this take is submitting it right now, or was cut off while doing so');
        }
        // A journal write slow enough to outlast the slot would let the POST arrive late and crowd the next second.
        if (slot !== undefined && Date.now() - slot > SLOT_HOLD_MS) {
          try {
            await awaitSubmitSlot(args.runDir, deps.submitsPerSecond!);
          } catch (err) {
            await clearSubmissionStarted(args.runDir, args.submissionKey); // nothing was sent
            throw err;
          }
        }
        let result: Awaited<ReturnType<ProviderClient['submit']>>;
        try {
          result = await deps.provider.submit({ image, prompt: args.prompt, params: args.generation });
        } catch (err) {
          // Only a request the provider certainly did not accept may be tried again (unless the user accepts
          // the risk of paying twice with the 'resubmit' policy).
          const unknownOutcome = err instanceof ProviderError && err.outcomeUnknown;
          if (!unknownOutcome || resubmit) await clearSubmissionStarted(args.runDir, args.submissionKey);
          if (unknownOutcome && !resubmit) throw uncertain(`The submission was sent but its outcome is unknown (${clean((err as Error).message)})`);
          if (unknownOutcome) throw ApplicationFailure.create({ type: 'SubmitOutcomeUnknown', message: clean((err as Error).message) });
          if (err instanceof ProviderError && err.code === CLIENT_ERROR_CODES.imageChanged) {
            // An original checked by this attempt changed while it was sent: the next attempt checks it again.
            if (args.source) throw ApplicationFailure.create({ type: err.code, message: clean(err.message) });
            throw ApplicationFailure.create({ type: err.code, nonRetryable: true, message: clean(`${err.message}. Run \`i2v regenerate\` for this shot to prepare the image again and submit it as it is now.`) });
          }
          throw err;
        }
        // Paid for now. If even recording the task id fails, the 'started' marker stays, so no retry pays again.
        try {
          await recordSubmission(args.runDir, args.submissionKey, { taskId: result.taskId, submittedAt: now().toISOString(), requestId: result.requestId });
        } catch (err) {
          throw uncertain(`Task ${result.taskId} was created but could not be recorded in the journal (${clean((err as Error).message)})`);
        }
        metrics.submission(args.generation.model);
        return { taskId: result.taskId, reused: false, elapsedSinceSubmitMs: 0 };
      };
      return guard(clean, async () => {
        const submitted = await submitOnce();
        if (args.record) await writeShotRecord({ runDir: args.runDir, ...args.record, update: { kind: 'submitted', taskId: submitted.taskId } });
        return submitted;
      });
    },

    /** One status check of a provider task. */
    async checkTask(args: { taskId: string }) {
      return guard(clean, async () => {
        metrics.poll();
        const t = await deps.provider.getTask(args.taskId);
        return {
          status: t.status, done: t.done, succeeded: t.succeeded, videoUrl: t.videoUrl, code: t.code, message: t.message,
          videoSeconds: t.usage.videoSeconds, generationSeconds: secondsBetween(t.submitTime, t.endTime),
        };
      });
    },

    /**
     * Downloads the take's video, verified, to its final name. A take after the first is downloaded beside the
     * canonical file and swapped in only once complete; the file it replaces is kept under `takes/`.
     */
    async downloadVideo(args: { runDir: string; shot: ShotSpec; videoUrl: string }) {
      return guard(clean, async () => {
        const out = outputPaths(args.runDir, args.shot.episode, args.shot.shot);
        const takesDir = path.join(out.episodeDir, 'takes');
        const target = args.shot.take === 1 ? out.videoPath : path.join(takesDir, `${args.shot.name}-take-${args.shot.take}.mp4`);
        const result = await withHeartbeats((onProgress, signal) => downloadVideo(args.videoUrl, target, { maxBytes: deps.maxVideoBytes, onProgress, signal }));
        metrics.download(result.bytes);
        if (target !== out.videoPath) {
          if (await exists(out.videoPath)) {
            const previousTake = takeAt((await readTaskRecord(args.runDir))[args.shot.key], args.runDir, out.videoPath) ?? args.shot.take - 1;
            const archived = await freeName(path.join(takesDir, `${args.shot.name}-take-${previousTake}.mp4`));
            await mkdir(takesDir, { recursive: true });
            await rename(out.videoPath, archived);
            await moveTakeVideo(args.runDir, args.shot.key, out.videoPath, archived);
          }
          await rename(target, out.videoPath);
        }
        return { videoPath: out.videoPath, videoUrl: args.videoUrl, bytes: result.bytes, durationSeconds: result.video.durationSeconds, width: result.video.width, height: result.video.height };
      });
    },

    /** First frame as PNG plus a small copy for reports. */
    async makeThumbnails(args: { runDir: string; shot: ShotSpec; videoPath: string }) {
      return guard(clean, async () => {
        const out = outputPaths(args.runDir, args.shot.episode, args.shot.shot);
        const t = await extractThumbnails(args.videoPath, out.thumbnailPath, out.smallThumbnailPath, deps.smallThumbnailWidth);
        return { thumbnailPath: t.thumbnailPath, smallThumbnailPath: t.smallThumbnailPath };
      });
    },

    /** Clears what crashed workers left behind, then refreshes `report.xlsx` and `index.html`. */
    async writeReports(args: { runDir: string }) {
      return guard(clean, async () => {
        await sweepLeftovers(videosDir(args.runDir));
        return writeReportsInChild(args.runDir, Context.current().cancellationSignal);
      });
    },

    /** Writes the shot's entry in `tasks.json` (atomically, safe against concurrent episodes). */
    async recordShot(args: ShotRecordArgs) {
      return guard(clean, () => writeShotRecord(args));
    },
  };

  /** Writes the shot's entry in `tasks.json` (atomically, safe against concurrent episodes). */
  async function writeShotRecord(args: ShotRecordArgs): Promise<void> {
    const { runDir, shot, update } = args;
    const time = formatLocalTime(now());
    const common = {
      episode: shot.episode, shot: shot.shot, take: shot.take, image_path: relativeToRun(runDir, shot.imagePath), prompt: shot.prompt,
      model: args.generation.model, resolution: args.generation.resolution,
    };
    switch (update.kind) {
      case 'submitted':
        await updateTaskRecord(runDir, shot.key, {
          ...common, cost: null, task_id: update.taskId, task_status: null, status: 'RUNNING', submit_time: time, complete_time: null,
          video_url: null, video_path: null, thumbnail_path: null, error_message: null, error_code: null,
        });
        return;
      case 'succeeded': {
        const cost = costOf(args.generation, update.billedSeconds);
        if (cost.cost !== null && cost.currency) metrics.spend(cost.cost, cost.currency);
        await updateTaskRecord(runDir, shot.key, {
          ...common, ...cost, task_id: update.taskId, task_status: 'SUCCEEDED', status: 'SUCCESS', complete_time: time, video_url: update.videoUrl,
          video_path: relativeToRun(runDir, update.videoPath), thumbnail_path: relativeToRun(runDir, update.thumbnailPath), error_message: null, error_code: null,
        });
        return;
      }
      case 'failed':
        metrics.failure(update.errorCode);
        await updateTaskRecord(runDir, shot.key, {
          ...common, ...failedTakeCost(args.generation, update.taskStatus), task_id: update.taskId ?? null, task_status: update.taskStatus ?? null,
          status: 'FAILED', complete_time: time, error_message: clean(update.errorMessage), error_code: update.errorCode,
        });
        return;
    }
  }
}

interface ShotRecordArgs {
  runDir: string;
  shot: ShotSpec;
  generation: GenerationParams;
  update: ShotRecordUpdate;
}

export type Activities = ReturnType<typeof createActivities>;

/** What to do when a paid submission may or may not have reached the provider. */
export type UncertainSubmitPolicy = 'fail' | 'resubmit';

export const SUBMIT_UNCERTAIN = 'SUBMIT_UNCERTAIN';

/**
 * Everything before the POST counts against the attempt's time limit: the image check, a wait for a CPU slot or
 * for the pacer, a slow disk. An attempt that was cancelled (the server gave up on it) or has used half its limit
 * stops before it marks the journal, with nothing sent: otherwise it could still be sending while the server's
 * next attempt finds the take marked and stops as uncertain (or, with 'resubmit', sends it a second time). The
 * other half is for the POST itself (its request time limit is a minute of SUBMIT's two). Retryable.
 */
function stillInTime(usedMs: number): void {
  const ctx = Context.current();
  const limitMs = ctx.info.startToCloseTimeoutMs;
  if (ctx.cancellationSignal.aborted || (limitMs > 0 && usedMs > limitMs / 2)) {
    throw ApplicationFailure.create({
      type: 'SubmitTooLate',
      message: `Getting ready to submit took ${Math.round(usedMs / 1000)} s of this attempt's ${Math.round(limitMs / 1000)} s, so nothing was sent; the next attempt starts afresh.`,
    });
  }
}

function uncertain(what: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: SUBMIT_UNCERTAIN,
    nonRetryable: true,
    message: `${what}; it was not sent again, so you are not charged twice. Check the provider console for the task, then run \`i2v regenerate\` for this shot (a new take).`,
  });
}

const HEARTBEAT_EVERY_MS = 3000;

/** Maps our typed errors to Temporal failures: retryable or not, with the provider's Retry-After honoured. */
async function guard<T>(clean: (s: string) => string, fn: () => Promise<T>): Promise<T> {
  // Every activity heartbeats while it runs, so work cut off by a crashed worker is retried within the
  // heartbeat timeout (seconds), not its start-to-close timeout (minutes).
  const ctx = Context.current();
  ctx.heartbeat();
  const beat = setInterval(() => ctx.heartbeat(), HEARTBEAT_EVERY_MS);
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    if (err instanceof InputError) {
      throw ApplicationFailure.create({ type: 'InputError', nonRetryable: true, message: clean(err.message + (err.fix ? ` ${err.fix}` : '')), details: [err.category] });
    }
    if (err instanceof ProviderError) {
      throw ApplicationFailure.create({
        type: err.code,
        nonRetryable: !err.retryable,
        message: clean(err.message),
        nextRetryDelay: err.retryAfterMs,
        details: [{ httpStatus: err.httpStatus, requestId: err.requestId }],
      });
    }
    if (err instanceof DownloadError) {
      const type = err.code === 'url-expired' ? 'UrlExpired' : `Download.${err.code}`;
      throw ApplicationFailure.create({ type, nonRetryable: !err.retryable, message: clean(err.message) });
    }
    if (err instanceof Error) throw ApplicationFailure.create({ type: err.name, message: clean(err.message) });
    throw err;
  } finally {
    clearInterval(beat);
  }
}

/** Reports download progress as heartbeat details and hands the work Temporal's cancellation signal. */
async function withHeartbeats<T>(work: (onProgress: (bytes: number, total?: number) => void, signal: AbortSignal) => Promise<T>): Promise<T> {
  const ctx = Context.current();
  return work((bytes, total) => ctx.heartbeat({ bytes, total }), ctx.cancellationSignal);
}

/** Seconds between two provider timestamps (`YYYY-MM-DD HH:MM:SS.mmm`, both in the provider's zone). */
function secondsBetween(from: string | undefined, to: string | undefined): number | undefined {
  const parse = (t: string | undefined) => (t ? Date.parse(`${t.trim().replace(' ', 'T')}Z`) : NaN);
  const ms = parse(to) - parse(from);
  return Number.isFinite(ms) && ms >= 0 ? ms / 1000 : undefined;
}

/**
 * A take that failed on our side after the provider finished it (download, disk, thumbnails) was billed; one the
 * provider failed, cancelled or lost was not; one still running at the provider is not known yet.
 */
function failedTakeCost(generation: GenerationParams, taskStatus: string | undefined): { cost: number | null; currency?: string } {
  if (taskStatus === 'SUCCEEDED' || taskStatus === 'SUCCESS') return costOf(generation, undefined);
  return taskStatus ? { cost: 0 } : { cost: null };
}

/** List price of a finished take: the seconds the provider billed (usage), else the model's default length. */
function costOf(generation: GenerationParams, billedSeconds: number | undefined): { cost: number | null; currency?: string } {
  if (billedSeconds === undefined) {
    const estimate = estimateShotCost(generation);
    return estimate ? { cost: estimate.amount, currency: estimate.currency } : { cost: null };
  }
  const price = priceOf(generation.model, generation.resolution);
  return price ? { cost: roundMoney(price.perSecond * billedSeconds), currency: price.currency } : { cost: null };
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

/** `p` if free, else `p` with a numeric suffix: an archived take is never overwritten. */
async function freeName(p: string): Promise<string> {
  const { dir, name, ext } = path.parse(p);
  for (let i = 1; ; i++) {
    const candidate = i === 1 ? p : path.join(dir, `${name}-${i}${ext}`);
    if (!(await exists(candidate))) return candidate;
  }
}
