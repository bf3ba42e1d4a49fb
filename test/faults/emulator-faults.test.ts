/**
 * Every fault the emulator can inject, one shot (or a one-shot episode) at a time, through the real workflows and
 * activities over real HTTP: what the shot ends as, exactly which requests reached the provider, how many of them
 * were paid for, and what the user is told; and, where a shot fails, that running it again pays nothing. A Temporal
 * dev server (real time, so Retry-After and retry intervals are real) runs most scenarios; the deadline and retries
 * that run out run on the time-skipping server.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { nextTake } from '../../src/cli/plan';
import { DEFAULT_GENERATION } from '../../src/config';
import { DEFAULT_FAULTS, startEmulator, type Emulator, type EmulatorFaults, type LedgerSubmission } from '../../src/emulator';
import { probeVideo } from '../../src/media/video';
import { outputPaths } from '../../src/runs/paths';
import { readTaskRecord, type TaskRecordEntry } from '../../src/runs/taskRecord';
import { scanRun } from '../../src/runs/scan';
import { DEFAULT_POLL_SCHEDULE } from '../../src/workflows/polling';
import type { EpisodeResult, EpisodeWorkflowInput, PollSchedule, ShotResult, ShotWorkflowInput } from '../../src/workflows/types';
import { makeRunFolder } from '../helpers/runFolder';
import { devServerEnv, emulatorWorker, timeSkippingEnv } from '../helpers/temporal';
import { leftovers, table } from './support';

/** Real-time polling, short enough to keep each scenario to seconds. */
const POLL: PollSchedule = { initialSeconds: 1, factor: 1.5, maxSeconds: 2 };

interface Env {
  env: TestWorkflowEnvironment;
  worker: Worker;
  running: Promise<void>;
  taskQueue: string;
}

let emulator: Emulator;
let dev: Env;
let skipping: Env;
/** Emulator log lines with the time they were written, to measure gaps between requests. */
const requestLog: Array<{ at: number; line: string }> = [];
const rows: Array<Record<string, string | number>> = [];

async function startEnv(env: TestWorkflowEnvironment, taskQueue: string): Promise<Env> {
  const worker = await emulatorWorker(env.nativeConnection, taskQueue, emulator.baseUrl);
  return { env, worker, running: worker.run(), taskQueue };
}

beforeAll(async () => {
  emulator = await startEmulator({ pendingMs: 0, runningMs: 0, videoSeconds: 1, log: (line) => requestLog.push({ at: Date.now(), line }) });
  const [devEnv, skippingEnv] = await Promise.all([devServerEnv(), timeSkippingEnv()]);
  [dev, skipping] = await Promise.all([startEnv(devEnv, 'faults-dev'), startEnv(skippingEnv, 'faults-skipping')]);
});

afterEach(() => {
  emulator.setFaults(DEFAULT_FAULTS);
});

afterAll(async () => {
  for (const e of [dev, skipping]) {
    e?.worker.shutdown();
    await e?.running;
    await e?.env.teardown();
  }
  await emulator?.close();
  console.log(`\nEmulator faults through the real workflows:\n${table(rows)}\n`);
});

interface Counted {
  posts: number;
  gets: number;
  downloads: number;
  /** Accepted (paid) submissions made during the scenario. */
  paid: LedgerSubmission[];
  /** The emulator's request log during the scenario. */
  log: Array<{ at: number; line: string }>;
}

function counter(): () => Counted {
  const before = emulator.ledger();
  const logIndex = requestLog.length;
  return () => {
    const after = emulator.ledger();
    return {
      posts: after.posts - before.posts,
      gets: after.gets - before.gets,
      downloads: after.downloads - before.downloads,
      paid: after.submissions.slice(before.submissions.length),
      log: requestLog.slice(logIndex),
    };
  };
}

async function runFolder(prompt: string) {
  const plan = await scanRun(await makeRunFolder([{ episode: 1, shot: 1, prompt }]));
  return { plan, planned: plan.episodes[0]!.shots[0]! };
}

interface ShotRun {
  result: ShotResult;
  counted: Counted;
  record: TaskRecordEntry;
  input: ShotWorkflowInput;
  ms: number;
  workflowId: string;
}

async function runShot(fault: string, prompt: string, faults: Partial<EmulatorFaults>, opts: { on?: Env; deadlineSeconds?: number; poll?: PollSchedule; input?: ShotWorkflowInput } = {}): Promise<ShotRun> {
  const on = opts.on ?? dev;
  let input = opts.input;
  if (!input) {
    const { plan, planned } = await runFolder(prompt);
    input = {
      runDir: plan.runDir, runId: `${plan.runId}-${randomUUID().slice(0, 8)}`, shot: { ...planned, take: 1 },
      generation: { ...DEFAULT_GENERATION, resolution: '480P' }, deadlineSeconds: opts.deadlineSeconds ?? 600, poll: opts.poll ?? POLL,
    };
  }
  emulator.setFaults(faults);
  const count = counter();
  const started = Date.now();
  const workflowId = `shot-${randomUUID()}`;
  const result: ShotResult = await on.env.client.workflow.execute('shotWorkflow', { taskQueue: on.taskQueue, workflowId, args: [input] });
  const ms = Date.now() - started;
  const counted = count();
  const record = (await readTaskRecord(input.runDir))[input.shot.key]!;
  rows.push(row(fault, result, counted, ms));
  return { result, counted, record, input, ms, workflowId };
}

interface EpisodeRun {
  result: EpisodeResult;
  shot: ShotResult;
  counted: Counted;
  record: TaskRecordEntry;
  runDir: string;
}

async function runEpisode(fault: string, prompt: string, faults: Partial<EmulatorFaults>): Promise<EpisodeRun> {
  const { plan, planned } = await runFolder(prompt);
  const input: EpisodeWorkflowInput = {
    runDir: plan.runDir, runId: `${plan.runId}-${randomUUID().slice(0, 8)}`, episode: 1, shots: [{ ...planned, take: 1 }], done: [],
    generation: { ...DEFAULT_GENERATION, resolution: '480P' }, deadlineSeconds: 600, poll: POLL, maxInFlight: 1,
  };
  emulator.setFaults(faults);
  const count = counter();
  const started = Date.now();
  const result: EpisodeResult = await dev.env.client.workflow.execute('episodeWorkflow', { taskQueue: dev.taskQueue, workflowId: `episode-${randomUUID()}`, args: [input] });
  const counted = count();
  const shot = result.shots[0]!;
  rows.push(row(fault, shot, counted, Date.now() - started));
  return { result, shot, counted, record: (await readTaskRecord(plan.runDir))[planned.key]!, runDir: plan.runDir };
}

function row(fault: string, r: ShotResult, c: Counted, ms: number): Record<string, string | number> {
  return {
    fault,
    state: r.status === 'SUCCESS' ? `SUCCESS (take ${r.take})` : `FAILED ${r.errorCode} (take ${r.take})`,
    POSTs: c.posts,
    paid: c.paid.length,
    GETs: c.gets,
    polls: r.polls,
    downloads: c.downloads,
    seconds: (ms / 1000).toFixed(1),
    message: r.errorMessage ?? '',
  };
}

/** The same shot run again as `i2v run` would: the take its tasks.json entry calls for, the same run folder. */
async function rerun(fault: string, first: ShotRun, on: Env = dev): Promise<ShotRun> {
  const out = outputPaths(first.input.runDir, first.input.shot.episode, first.input.shot.shot);
  const next = nextTake(first.record, existsSync(out.videoPath) && existsSync(out.thumbnailPath));
  return runShot(fault, '', {}, { on, input: { ...first.input, shot: { ...first.input.shot, take: next.take } } });
}

/** The shot's video and thumbnails are in place and valid, tasks.json says so, and nothing half-written is left. */
async function expectDelivered(run: { result: ShotResult; record: TaskRecordEntry; input?: ShotWorkflowInput; runDir?: string }): Promise<void> {
  const runDir = run.input?.runDir ?? run.runDir!;
  expect(run.result.status, run.result.errorMessage).toBe('SUCCESS');
  const out = outputPaths(runDir, run.result.episode, run.result.shot);
  const video = await probeVideo(out.videoPath);
  expect(video.codec).toBe('h264');
  expect(existsSync(out.thumbnailPath) && existsSync(out.smallThumbnailPath)).toBe(true);
  expect(run.record).toMatchObject({ status: 'SUCCESS', task_id: run.result.taskId, error_code: null });
  expect(await leftovers(runDir)).toEqual([]);
}

/** Failed without a video, and tasks.json says why. */
function expectFailedRecord(run: { result: ShotResult; record: TaskRecordEntry }, code: string): void {
  expect(run.result).toMatchObject({ status: 'FAILED', errorCode: code });
  expect(run.record).toMatchObject({ status: 'FAILED', error_code: code, video_path: null });
  expect(run.record.error_message).toBe(run.result.errorMessage);
}

const UNCERTAIN_ADVICE = /not sent again, so you are not charged twice\. Check the provider console for the task, then run `i2v regenerate`/;

describe('submit faults', () => {
  it('429 Throttling.RateQuota: retried after Retry-After, one paid submission', async () => {
    const run = await runShot('429 + Retry-After 4 s', 'throttled once', { throttleSubmits: 1, retryAfterSeconds: 4 });
    await expectDelivered(run);
    expect(run.counted.posts).toBe(2);
    expect(run.counted.paid).toHaveLength(1);
    expect(run.counted.gets).toBe(run.result.polls);
    expect(run.counted.downloads).toBe(1);
    // The retry waited for Retry-After (4 s), not the activity's own 2 s backoff.
    const posts = run.counted.log.filter((l) => l.line.startsWith('POST '));
    expect(posts.map((p) => p.line.split(' ')[2])).toEqual(['429', '200']);
    expect(posts[1]!.at - posts[0]!.at).toBeGreaterThanOrEqual(3_900);
  });

  it('429 Throttling.AllocationQuota (quota used up): fails at once, nothing paid', async () => {
    const run = await runShot('429 AllocationQuota', 'out of quota', { quotaSubmits: 1 });
    expectFailedRecord(run, 'Throttling.AllocationQuota');
    expect(run.counted).toMatchObject({ posts: 1, gets: 0, downloads: 0, paid: [] });
    expect(run.result.errorMessage).toMatch(/HTTP 429 Throttling.AllocationQuota/);
  });

  it.each([500, 503] as const)('HTTP %i on submit: retried, one paid submission', async (status) => {
    const run = await runShot(`submit ${status}`, `server error ${status} once`, { serverErrorSubmits: 1, serverErrorStatus: status });
    await expectDelivered(run);
    expect(run.counted.posts).toBe(2);
    expect(run.counted.paid).toHaveLength(1);
    expect(run.counted.gets).toBe(run.result.polls);
  });

  it.each([502, 504] as const)('HTTP %i on submit (a gateway gave up): SUBMIT_UNCERTAIN, never POSTed again', async (status) => {
    const run = await runShot(`submit ${status}`, `gateway ${status}`, { serverErrorSubmits: 1, serverErrorStatus: status });
    expectFailedRecord(run, 'SUBMIT_UNCERTAIN');
    expect(run.counted).toMatchObject({ posts: 1, gets: 0, downloads: 0, paid: [] });
    expect(run.result.errorMessage).toMatch(new RegExp(`HTTP ${status} InternalError`));
    expect(run.result.errorMessage).toMatch(UNCERTAIN_ADVICE);
  });

  it('connection reset before the request is read: treated as outcome unknown (SUBMIT_UNCERTAIN), nothing paid twice', async () => {
    // The client cannot tell this from a reset after acceptance, so it must not POST again.
    const run = await runShot('reset before read', 'reset on arrival', { resetSubmitsBeforeRead: 1 });
    expectFailedRecord(run, 'SUBMIT_UNCERTAIN');
    expect(run.counted).toMatchObject({ posts: 1, gets: 0, downloads: 0, paid: [] });
    expect(run.result.errorMessage).toMatch(/ECONNRESET|EPIPE|other side closed/);
    expect(run.result.errorMessage).toMatch(UNCERTAIN_ADVICE);
  });

  it('connection reset after the task was accepted: SUBMIT_UNCERTAIN, exactly one paid submission, and a re-run pays nothing', async () => {
    const run = await runShot('reset after accept', 'accepted then reset', { resetSubmitsAfterAccept: 1 });
    expectFailedRecord(run, 'SUBMIT_UNCERTAIN');
    expect(run.counted.posts).toBe(1);
    expect(run.counted.paid).toHaveLength(1);
    expect(run.counted.paid[0]!.prompt).toBe('accepted then reset');
    expect(run.result.errorMessage).toMatch(UNCERTAIN_ADVICE);
    expect(run.record.task_id).toBeNull();

    // The same take again (a re-run): the journal still says "sent, outcome unknown", so nothing is POSTed.
    const again = await runShot('reset after accept, re-run', '', {}, { input: run.input });
    expect(again.result).toMatchObject({ status: 'FAILED', errorCode: 'SUBMIT_UNCERTAIN' });
    expect(again.counted).toMatchObject({ posts: 0, paid: [] });
  });
});

describe('query faults', () => {
  it.each([500, 502, 503, 504] as const)('HTTP %i on a status check: retried, SUCCESS', async (status) => {
    const run = await runShot(`query ${status}`, `query error ${status}`, { serverErrorQueries: 1, serverErrorStatus: status });
    await expectDelivered(run);
    expect(run.counted.posts).toBe(1);
    expect(run.counted.paid).toHaveLength(1);
    expect(run.counted.gets).toBe(run.result.polls + 1);
  });

  it('connection reset on status checks: retried, SUCCESS', async () => {
    const run = await runShot('query reset ×2', 'query resets', { resetQueries: 2 });
    await expectDelivered(run);
    expect(run.counted.posts).toBe(1);
    expect(run.counted.paid).toHaveLength(1);
    expect(run.counted.gets).toBe(run.result.polls + 2);
  });

  it('UNKNOWN: FAILED UNKNOWN, polling stops at that answer', async () => {
    const run = await runShot('UNKNOWN', 'forgotten by the provider', { unknownTasks: 1 });
    expectFailedRecord(run, 'UNKNOWN');
    expect(run.result.polls).toBe(1);
    expect(run.counted).toMatchObject({ posts: 1, gets: 1, downloads: 0 });
    expect(run.counted.paid).toHaveLength(1);
    expect(run.record.task_id).toBe(run.counted.paid[0]!.taskId);
    expect(run.result.errorMessage).toMatch(/provider does not know this task/);
  });
});

describe('task faults', () => {
  it('FAILED InternalError: one automatic new take, which succeeds', async () => {
    const run = await runEpisode('task FAILED InternalError', 'fails once', { failTasks: 1, failCode: 'InternalError' });
    expect(run.shot).toMatchObject({ status: 'SUCCESS', take: 2 });
    expect(run.result).toMatchObject({ succeeded: 1, failed: 0 });
    expect(run.counted.posts).toBe(2);
    expect(run.counted.paid).toHaveLength(2);
    // Two takes of the same shot, each paid once: no duplicate beyond the expected takes.
    expect(emulator.duplicates((g) => (g.prompt === 'fails once' ? 2 : 1))).toEqual([]);
    expect(run.record).toMatchObject({ take: 2 });
    await expectDelivered({ result: run.shot, record: run.record, runDir: run.runDir });
  });

  it('FAILED DataInspectionFailed: no new take, one paid submission, the user is told to edit the prompt', async () => {
    const run = await runEpisode('task FAILED DataInspectionFailed', 'blocked by moderation', {
      failTasks: 1, failCode: 'DataInspectionFailed', failMessage: 'Output data may contain inappropriate content.',
    });
    expectFailedRecord({ result: run.shot, record: run.record }, 'DataInspectionFailed');
    expect(run.shot.take).toBe(1);
    expect(run.counted.posts).toBe(1);
    expect(run.counted.paid).toHaveLength(1);
    expect(run.shot.errorMessage).toMatch(/Content moderation blocked this shot.*Edit the prompt or image, then run `i2v regenerate` with --prompt/);
  });

  it('stuck RUNNING: DeadlineExceeded at the deadline, the task id kept in tasks.json; a re-run re-checks it and pays nothing', async () => {
    const run = await runShot('stuck RUNNING (deadline 600 s, time-skipping)', 'never finishes', { stuckTasks: true }, { on: skipping, deadlineSeconds: 600, poll: DEFAULT_POLL_SCHEDULE });
    expectFailedRecord(run, 'DeadlineExceeded');
    expect(run.counted.posts).toBe(1);
    expect(run.counted.paid).toHaveLength(1);
    const taskId = run.counted.paid[0]!.taskId;
    expect(run.result.taskId).toBe(taskId);
    expect(run.record.task_id).toBe(taskId);
    expect(run.counted.gets).toBe(run.result.polls);
    // On the workflow's clock, it ended at the deadline (plus the last poll interval at most).
    const { startTime, closeTime } = await skipping.env.client.workflow.getHandle(run.workflowId).describe();
    const workflowSeconds = (closeTime!.getTime() - startTime.getTime()) / 1000;
    expect(workflowSeconds).toBeGreaterThanOrEqual(600);
    expect(workflowSeconds).toBeLessThan(600 + DEFAULT_POLL_SCHEDULE.maxSeconds + 5);
    expect(run.result.errorMessage).toBe(`No result within 10 min of submission; task ${taskId} is recorded, and a later run re-checks it before paying again.`);

    const again = await rerun('stuck RUNNING, re-run', run, skipping);
    expect(again.result).toMatchObject({ status: 'FAILED', errorCode: 'DeadlineExceeded', take: 1, taskId });
    expect(again.counted).toMatchObject({ posts: 0, paid: [] });
    expect(again.counted.gets).toBe(again.result.polls);
  });
});

describe('download faults', () => {
  it('truncated download: retried, SUCCESS, the final file valid and no .part left', async () => {
    const run = await runShot('truncated download', 'cut off once', { truncateDownloads: 1 });
    await expectDelivered(run);
    expect(run.counted).toMatchObject({ posts: 1, downloads: 2 });
    expect(run.counted.paid).toHaveLength(1);
    expect(run.counted.gets).toBe(run.result.polls);
  });

  it('slow download: SUCCESS', async () => {
    const rate = 12 * 1024;
    const run = await runShot(`slow download (${rate / 1024} KiB/s)`, 'a slow link', { downloadBytesPerSecond: rate });
    await expectDelivered(run);
    expect(run.counted).toMatchObject({ posts: 1, downloads: 1 });
    const bytes = (await probeVideo(outputPaths(run.input.runDir, 1, 1).videoPath)).bytes;
    const served = run.counted.log.find((l) => /^GET \/videos\/\S+ 200 \d+ms$/.test(l.line))!;
    const tookMs = Number(/ (\d+)ms$/.exec(served.line)![1]);
    expect(tookMs).toBeGreaterThanOrEqual(((bytes - rate / 10) / rate) * 1000 - 50);
  });

  it('video URL refused twice: FAILED UrlExpired; a re-run resumes the same take and downloads it without paying again', async () => {
    const run = await runShot('expired video URL ×2', 'expired link twice', { expireVideoUrls: 2 });
    expectFailedRecord(run, 'UrlExpired');
    expect(run.counted).toMatchObject({ posts: 1, downloads: 2, gets: run.result.polls + 1 });
    expect(run.counted.paid).toHaveLength(1);
    expect(run.result.errorMessage).toMatch(/has expired and the provider gave no fresh one|expired/);

    const again = await rerun('expired video URL ×2, re-run', run);
    expect(again.result.take).toBe(1);
    await expectDelivered(again);
    expect(again.counted).toMatchObject({ posts: 0, paid: [], downloads: 1 });
  });

  it('downloads cut off until the retries run out: FAILED; a re-run resumes the same take and pays nothing', async () => {
    const run = await runShot('truncated ×5 (time-skipping)', 'a flaky link', { truncateDownloads: 5 }, { on: skipping });
    expect(run.result).toMatchObject({ status: 'FAILED', errorCode: 'Download.truncated' });
    expect(run.counted).toMatchObject({ posts: 1, downloads: 5 });
    expect(await leftovers(run.input.runDir)).toEqual([]);

    const again = await rerun('truncated ×5, re-run', run, skipping);
    expect(again.result.take).toBe(1);
    await expectDelivered(again);
    expect(again.counted).toMatchObject({ posts: 0, paid: [], downloads: 1 });
  });

  it('expired video URL: re-queried for a fresh URL (one extra GET), SUCCESS', async () => {
    const run = await runShot('expired video URL', 'expired link', { expireVideoUrls: 1 });
    await expectDelivered(run);
    expect(run.counted).toMatchObject({ posts: 1, downloads: 2 });
    expect(run.counted.paid).toHaveLength(1);
    expect(run.counted.gets).toBe(run.result.polls + 1);
  });
});
