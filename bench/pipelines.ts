/**
 * One measured pipeline run: a fresh run folder and emulator (and, for ours, a fresh Temporal server), the run,
 * then what it did, from the emulator's log and ledger, the provider's task end times and Temporal's histories.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_GENERATION, DEFAULTS, providerConfig, type GenerationParams } from '../src/config';
import { startEmulator, type Emulator } from '../src/emulator';
import type { RunSettings } from '../src/cli/plan';
import { createProviderClient } from '../src/provider/client';
import { startEmbeddedServer, type TemporalHandle } from '../src/temporal/connection';
import { DEFAULT_ACTIVITY_QUEUES } from '../src/worker';
import { DEFAULT_POLL_SCHEDULE } from '../src/workflows/polling';
import { makeRunFolder, type ImageKind } from './fixtures';
import { seededRandom } from '../src/emulator/random';
import { NAIVE_POLL_SECONDS, scaledTimings, scaleEstimate, scalePollSchedule, type LatencyModel } from './latency';
import { distribution, findProcess, parseProviderTime, processUsage, RequestLog, round, type Distribution, type ProcessUsage } from './measure';
import type { NaiveConfig, NaiveResult } from './naive';
import { episodeRuns, runOurs, shotHistories, type ActivityTime, type HistoryFacts } from './ours';

export type ScenarioName = 'default' | 'scale' | 'payload';

export interface MeasureOptions {
  timeFactor: number;
  seed: number;
  /** Our submissions per second. */
  submitRate: number;
  /** Keep the temporary folders. */
  keep: boolean;
}

/** One pipeline's run, as measured. Times in seconds from the pipeline's start. */
export interface RunMetrics {
  scenario: ScenarioName;
  label: string;
  pipeline: 'ours' | 'naive';
  shots: number;
  succeeded: number;
  failed: number;
  maxInFlight: number | null;
  inputImageBytesP50: number;
  /** Start → the last shot's video and thumbnail written (ours: the last shot workflow closed). */
  makespanSeconds: number;
  /** Start → the command returned (ours: also validation up front and the episode's reports at the end). */
  commandSeconds: number;
  /** Last task ready (provider end_time) + that task's own download and thumbnail time. */
  idealSeconds: number;
  makespanOverIdeal: number;
  lastReadySeconds: number;
  /** First and last accepted submission. */
  submitSeconds: { first: number; last: number };
  /** Ours: first and last shot workflow started. */
  shotStartSeconds?: { first: number; last: number };
  /** Task ready → its video download started, seconds. */
  detectionLagSeconds: Distribution;
  /** Status checks per task. */
  pollsPerTask: Distribution;
  postsPerShot: number;
  downloadsPerShot: number;
  /** The worker process (ours) or the baseline's process. */
  process: ProcessUsage;
  /** Ours: the worker's peak RSS once started, before any work (the workflow bundle is built at start). */
  idlePeakRssMb?: number;
  /** Ours: the worker's memory settings, read from its environment (MALLOC_ARENA_MAX, NODE_OPTIONS). */
  workerMemorySettings?: Record<string, string>;
  /** Ours: CPU of the embedded Temporal server during the run, seconds. */
  serverCpuSeconds?: number;
  history?: HistoryMetrics;
}

export interface HistoryMetrics {
  shotEvents: Distribution;
  shotBytes: Distribution;
  shotPayloadBytes: Distribution;
  episodeRuns: number;
  episodeEventsPerRun: number[];
  episodeBytesPerRun: number[];
  /** Per activity type, mean per shot: calls, seconds waiting for a worker slot, seconds running. */
  activities: Record<string, { calls: number; queueSeconds: number; runSeconds: number }>;
}


export interface PipelineConfig {
  scenario: ScenarioName;
  shots: number;
  image: ImageKind;
  latency: LatencyModel;
  maxInFlight: number;
}

const GENERATION: GenerationParams = { ...DEFAULT_GENERATION, resolution: '480P' };

/** A fresh emulator with the scenario's timings; the seed makes its draws the same for every pipeline. */
function emulatorFor(cfg: PipelineConfig, opts: MeasureOptions, requests: RequestLog, workDir: string): Promise<Emulator> {
  const timings = scaledTimings(cfg.latency, opts.timeFactor, seededRandom(opts.seed));
  return startEmulator({ pendingMs: timings.pendingMs, runningMsSampler: timings.runningMs, videoSeconds: 1, workDir, log: requests.log, renderAtLowPriority: true });
}

export async function measureOurs(label: string, cfg: PipelineConfig, opts: MeasureOptions): Promise<RunMetrics> {
  process.stdout.write(`${label}: preparing ${cfg.shots} shots… `);
  const root = await mkdtemp(path.join(os.tmpdir(), 'i2v-bench-'));
  const requests = new RequestLog();
  const folder = await makeRunFolder(root, cfg.shots, cfg.image, opts.seed);
  // The server's SQLite database goes to memory when it can, so this machine's disk-sync speed is not measured.
  const stateRoot = existsSync('/dev/shm') ? await mkdtemp('/dev/shm/i2v-bench-') : path.join(root, 'temporal');
  const emulator = await emulatorFor(cfg, opts, requests, path.join(root, 'emulator'));
  let temporal: TemporalHandle | undefined;
  try {
    temporal = await startEmbeddedServer({ stateDir: stateRoot, ip: '127.0.0.1', port: 0, uiPort: 0 });
    const serverPid = findProcess(stateRoot);
    const serverCpuAtStart = serverPid ? processUsage(serverPid).cpuSeconds : NaN;
    process.stdout.write('running… ');
    const settings: RunSettings = {
      generation: GENERATION,
      deadlineSeconds: Math.max(60, Math.round(DEFAULTS.deadlineSeconds * opts.timeFactor)),
      poll: scalePollSchedule(DEFAULT_POLL_SCHEDULE, opts.timeFactor),
      // As `i2v run` does: the real service's expected generation time for a real provider, none for the quick
      // emulator (the near-zero and fixed latencies stand for neither, so they run without one).
      ...(cfg.latency === 'real' ? { expectedGeneration: scaleEstimate(DEFAULTS.expectedGeneration, opts.timeFactor) } : {}),
      maxInFlight: cfg.maxInFlight,
      queues: DEFAULT_ACTIVITY_QUEUES,
    };
    const provider = providerConfig('emulator', { baseUrl: emulator.baseUrl });
    const run = await runOurs({ runDir: folder.runDir, temporal, provider, settings, submitRate: opts.submitRate });
    requests.stop();
    const serverCpuSeconds = serverPid ? round(processUsage(serverPid).cpuSeconds - serverCpuAtStart, 2) : undefined;
    process.stdout.write('reading histories… ');
    const shots = run.summary.results.flatMap((r) => r.shots);
    const histories = await shotHistories(temporal, run.summary);
    const episode = await episodeRuns(temporal, run.summary.plan.runId, 1);
    const ready = await readyTimes(emulator, shots.map((s) => s.taskId));
    const doneAt = Math.max(...[...histories.values()].map((h) => h.closedAt));
    const last = lastReady(ready);
    const lastShot = shots.find((s) => s.taskId === last?.taskId);
    const lastHistory = lastShot ? histories.get(lastShot.key) : undefined;
    const fileWorkMs = (lastHistory?.activities.downloadVideo?.runMs ?? 0) + (lastHistory?.activities.makeThumbnails?.runMs ?? 0);
    const h = [...histories.values()];
    const shotStarts = h.map((x) => x.startedAt - run.startedAt);
    const metrics = assemble({
      cfg, label, pipeline: 'ours', folderBytes: folder.imageBytes, startedAt: run.startedAt, doneAt, commandAt: run.finishedAt,
      succeeded: run.summary.succeeded, failed: run.summary.failed, ready, lastReadyFileWorkMs: fileWorkMs, requests, emulator, process: run.worker, idlePeakRssMb: run.workerIdlePeakRssMb, workerMemorySettings: run.workerMemorySettings, serverCpuSeconds,
      history: {
        shotEvents: distribution(h.map((x) => x.events), 0),
        shotBytes: distribution(h.map((x) => x.bytes), 0),
        shotPayloadBytes: distribution(h.map((x) => x.payloadBytes), 0),
        episodeRuns: episode.length,
        episodeEventsPerRun: episode.map((r) => r.events),
        episodeBytesPerRun: episode.map((r) => r.bytes),
        activities: activityTimes(h),
      },
    });
    metrics.shotStartSeconds = { first: round(Math.min(...shotStarts) / 1000, 3), last: round(Math.max(...shotStarts) / 1000, 3) };
    console.log(`done in ${metrics.commandSeconds} s`);
    return metrics;
  } finally {
    await temporal?.close();
    await emulator.close();
    if (!opts.keep) await Promise.all([root, stateRoot].map((dir) => rm(dir, { recursive: true, force: true })));
  }
}

function activityTimes(histories: HistoryFacts[]): HistoryMetrics['activities'] {
  const sum: Record<string, ActivityTime> = {};
  for (const h of histories) {
    for (const [name, a] of Object.entries(h.activities)) {
      const t = (sum[name] ??= { calls: 0, queueMs: 0, runMs: 0 });
      t.calls += a.calls;
      t.queueMs += a.queueMs;
      t.runMs += a.runMs;
    }
  }
  const n = Math.max(1, histories.length);
  return Object.fromEntries(
    Object.entries(sum).map(([name, t]) => [name, { calls: round(t.calls / n, 2), queueSeconds: round(t.queueMs / n / 1000, 3), runSeconds: round(t.runMs / n / 1000, 3) }]),
  );
}

export async function measureNaive(label: string, cfg: PipelineConfig, opts: MeasureOptions): Promise<RunMetrics> {
  process.stdout.write(`${label}: preparing ${cfg.shots} shots… `);
  const root = await mkdtemp(path.join(os.tmpdir(), 'i2v-bench-'));
  const requests = new RequestLog();
  const folder = await makeRunFolder(root, cfg.shots, cfg.image, opts.seed);
  const emulator = await emulatorFor(cfg, opts, requests, path.join(root, 'emulator'));
  try {
    process.stdout.write('running… ');
    const config: NaiveConfig = {
      runDir: folder.runDir, baseUrl: emulator.baseUrl, apiKey: DEFAULTS.emulatorApiKey, generation: GENERATION,
      pollIntervalMs: Math.round(NAIVE_POLL_SECONDS * 1000 * opts.timeFactor), downloadWorkers: 5,
    };
    const result = await runNaiveProcess(config, root);
    requests.stop();
    const ready = await readyTimes(emulator, result.shots.map((s) => s.taskId));
    const last = lastReady(ready);
    const lastShot = result.shots.find((s) => s.taskId === last?.taskId);
    const done = result.shots.filter((s) => s.doneAt !== undefined);
    const metrics = assemble({
      cfg, label, pipeline: 'naive', folderBytes: folder.imageBytes, startedAt: result.startedAt,
      doneAt: Math.max(...done.map((s) => s.doneAt!)), commandAt: result.finishedAt,
      succeeded: done.length, failed: result.shots.length - done.length, ready,
      lastReadyFileWorkMs: (lastShot?.downloadMs ?? 0) + (lastShot?.thumbnailMs ?? 0), requests, emulator, process: result.usage,
    });
    console.log(`done in ${metrics.commandSeconds} s`);
    return metrics;
  } finally {
    await emulator.close();
    if (!opts.keep) await rm(root, { recursive: true, force: true });
  }
}

async function runNaiveProcess(config: NaiveConfig, root: string): Promise<NaiveResult> {
  const configFile = path.join(root, 'naive-config.json');
  const resultFile = path.join(root, 'naive-result.json');
  await writeFile(configFile, JSON.stringify(config));
  const child = spawn(process.execPath, [path.join(__dirname, 'naive.js'), configFile, resultFile], { stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`the naive baseline exited with code ${code}`);
  return JSON.parse(await readFile(resultFile, 'utf8')) as NaiveResult;
}

/** When each task became SUCCEEDED at the provider, from its end_time (asked once, after the run). */
async function readyTimes(emulator: Emulator, taskIds: Array<string | undefined>): Promise<Map<string, number>> {
  const client = createProviderClient(providerConfig('emulator', { baseUrl: emulator.baseUrl }));
  const ready = new Map<string, number>();
  try {
    for (const id of taskIds) {
      if (!id) continue;
      const t = await client.getTask(id);
      if (t.succeeded && t.endTime) ready.set(id, parseProviderTime(t.endTime));
    }
  } finally {
    await client.close();
  }
  return ready;
}

function lastReady(ready: Map<string, number>): { taskId: string; at: number } | undefined {
  let last: { taskId: string; at: number } | undefined;
  for (const [taskId, at] of ready) if (!last || at > last.at) last = { taskId, at };
  return last;
}

function assemble(x: {
  cfg: PipelineConfig; label: string; pipeline: 'ours' | 'naive'; folderBytes: number[]; startedAt: number; doneAt: number; commandAt: number;
  succeeded: number; failed: number; ready: Map<string, number>; lastReadyFileWorkMs: number; requests: RequestLog; emulator: Emulator;
  process: ProcessUsage; idlePeakRssMb?: number; workerMemorySettings?: Record<string, string>; serverCpuSeconds?: number; history?: HistoryMetrics;
}): RunMetrics {
  const seconds = (ms: number) => round(ms / 1000, 3);
  const last = lastReady(x.ready);
  const ideal = last ? last.at - x.startedAt + x.lastReadyFileWorkMs : NaN;
  const makespan = x.doneAt - x.startedAt;
  const lags: number[] = [];
  const polls: number[] = [];
  for (const [taskId, at] of x.ready) {
    const r = x.requests.tasks.get(taskId);
    polls.push(r?.polls ?? 0);
    if (r?.downloadStartedAt !== undefined) lags.push((r.downloadStartedAt - at) / 1000);
  }
  const ledger = x.emulator.ledger();
  return {
    scenario: x.cfg.scenario,
    label: x.label,
    pipeline: x.pipeline,
    shots: x.cfg.shots,
    succeeded: x.succeeded,
    failed: x.failed,
    maxInFlight: x.pipeline === 'ours' ? x.cfg.maxInFlight : null,
    inputImageBytesP50: distribution(x.folderBytes, 0).p50,
    makespanSeconds: seconds(makespan),
    commandSeconds: seconds(x.commandAt - x.startedAt),
    idealSeconds: seconds(ideal),
    makespanOverIdeal: round(makespan / ideal, 3),
    lastReadySeconds: last ? seconds(last.at - x.startedAt) : NaN,
    submitSeconds: {
      first: seconds(Math.min(...ledger.submissions.map((s) => Date.parse(s.at))) - x.startedAt),
      last: seconds(Math.max(...ledger.submissions.map((s) => Date.parse(s.at))) - x.startedAt),
    },
    detectionLagSeconds: distribution(lags),
    pollsPerTask: distribution(polls, 2),
    postsPerShot: round(ledger.posts / x.cfg.shots, 3),
    downloadsPerShot: round(ledger.downloads / x.cfg.shots, 3),
    process: x.process,
    idlePeakRssMb: x.idlePeakRssMb,
    workerMemorySettings: x.workerMemorySettings,
    serverCpuSeconds: x.serverCpuSeconds,
    history: x.history,
  };
}
