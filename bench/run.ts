/**
 * `npm run bench`: the pipeline against a naive baseline and at scale, on the emulator, with a realistic
 * generation-latency distribution shrunk by one time factor. Prints one table and writes
 * bench/results/<timestamp>-<scenario>.json. See bench/README.md for what each figure means.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_GENERATION, DEFAULTS, providerConfig, type GenerationParams } from '../src/config';
import { startEmulator, type Emulator } from '../src/emulator';
import type { RunSettings } from '../src/cli/plan';
import { createProviderClient } from '../src/provider/client';
import { startEmbeddedServer } from '../src/temporal/connection';
import { DEFAULT_ACTIVITY_QUEUES } from '../src/worker';
import { DEFAULT_POLL_SCHEDULE } from '../src/workflows/polling';
import { makeRunFolder, type ImageKind } from './fixtures';
import { NAIVE_POLL_SECONDS, scaledTimings, scalePollSchedule, seededRandom, type LatencyModel, type ScaledTimings } from './latency';
import { distribution, findProcess, parseProviderTime, processUsage, RequestLog, round, type Distribution, type ProcessUsage } from './measure';
import type { NaiveConfig, NaiveResult } from './naive';
import { modelPollSchedules, type ScheduleOutcome } from './pollModel';
import { episodeRuns, runOurs, shotHistories, type ActivityTime, type HistoryFacts } from './ours';

type ScenarioName = 'default' | 'scale' | 'payload';
const SCENARIOS: readonly ScenarioName[] = ['default', 'scale', 'payload'];

interface BenchOptions {
  scenarios: ScenarioName[];
  scenarioLabel: string;
  shots: number;
  latency: LatencyModel;
  timeFactor: number;
  seed: number;
  maxInFlight?: number;
  scaleShots: number;
  scaleMaxInFlight: number;
  payloadShots: number;
  submitRate: number;
  keep: boolean;
}

/** One pipeline's run, as measured. Times in seconds from the pipeline's start. */
interface RunMetrics {
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
  /** Ours: CPU of the embedded Temporal server during the run, seconds. */
  serverCpuSeconds?: number;
  history?: HistoryMetrics;
}

interface HistoryMetrics {
  shotEvents: Distribution;
  shotBytes: Distribution;
  shotPayloadBytes: Distribution;
  episodeRuns: number;
  episodeEventsPerRun: number[];
  episodeBytesPerRun: number[];
  /** Per activity type, mean per shot: calls, seconds waiting for a worker slot, seconds running. */
  activities: Record<string, { calls: number; queueSeconds: number; runSeconds: number }>;
}

interface Target {
  target: string;
  met: boolean;
  evidence: string;
}

async function main(argv: string[]): Promise<number> {
  const opts = parseOptions(argv);
  const ratio = opts.timeFactor;
  const header = [
    `i2v bench: scenario ${opts.scenarioLabel}, seed ${opts.seed}, time factor ${ratio} (1 real second = ${round(ratio * 1000, 1)} ms here)`,
    `  latency "real": PENDING ${round(3 * ratio, 3)} s, RUNNING 90 % U(90,180) s + 10 % U(180,300) s, scaled to ${round(90 * ratio, 2)}–${round(300 * ratio, 2)} s`,
    `  our poll schedule ${JSON.stringify(scalePollSchedule(DEFAULT_POLL_SCHEDULE, ratio))}, naive every ${round(NAIVE_POLL_SECONDS * ratio, 3)} s; submit rate ${opts.submitRate}/s`,
  ];
  for (const line of header) console.log(line);

  const runs: RunMetrics[] = [];
  const started = Date.now();
  const loadAtStart = os.loadavg();
  for (const scenario of opts.scenarios) {
    if (scenario === 'default') {
      const cfg: PipelineConfig = { scenario, shots: opts.shots, image: 'scene', latency: opts.latency, maxInFlight: opts.maxInFlight ?? opts.shots };
      runs.push(await measureOurs(`ours ${opts.shots}`, cfg, opts));
      runs.push(await measureNaive(`naive ${opts.shots}`, cfg, opts));
    } else if (scenario === 'scale') {
      const cfg: PipelineConfig = { scenario, shots: opts.scaleShots, image: 'scene', latency: 'near-zero', maxInFlight: opts.scaleMaxInFlight };
      runs.push(await measureOurs(`scale ${opts.scaleShots}`, cfg, opts));
    } else {
      for (const [label, image] of [['100 KB', { bytes: 100_000 }], ['9 MB', { bytes: 9_000_000 }]] as const) {
        // The same latency for every task, so both sizes poll alike and any difference is in the payloads.
        const cfg: PipelineConfig = { scenario, shots: opts.payloadShots, image, latency: 'fixed', maxInFlight: opts.payloadShots };
        runs.push(await measureOurs(`payload ${label}`, cfg, opts));
      }
    }
  }
  const targets = checkTargets(runs);
  const model = opts.scenarios.includes('default') ? modelPollSchedules(opts.seed) : undefined;
  console.log('');
  console.log(formatTable(runs));
  console.log('');
  console.log(formatActivities(runs));
  console.log('');
  if (model) {
    console.log(formatModel(model.outcomes, opts.timeFactor));
    console.log('');
  }
  for (const t of targets) console.log(`${t.met ? 'MET   ' : 'MISSED'} ${t.target}: ${t.evidence}`);
  console.log(`\n(${round((Date.now() - started) / 60_000, 1)} min)`);

  const resultsDir = path.join(__dirname, '..', '..', 'results');
  await mkdir(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${opts.scenarioLabel}.json`);
  const machine = {
    cpus: os.availableParallelism(), memoryGb: round(os.totalmem() / 2 ** 30, 1), node: process.version, platform: `${os.platform()} ${os.release()}`,
    // Other work on the machine slows both pipelines; the 1-, 5- and 15-minute load averages say how busy it was.
    loadAverage: { start: loadAtStart.map((l) => round(l, 2)), end: os.loadavg().map((l) => round(l, 2)) },
  };
  await writeFile(file, `${JSON.stringify({ scenario: opts.scenarioLabel, seed: opts.seed, timeFactor: opts.timeFactor, options: opts, machine, runs, targets, pollModel: model?.outcomes }, null, 2)}\n`);
  console.log(`Results: ${path.relative(process.cwd(), file)}`);
  return 0;
}

interface PipelineConfig {
  scenario: ScenarioName;
  shots: number;
  image: ImageKind;
  latency: LatencyModel;
  maxInFlight: number;
}

const GENERATION: GenerationParams = { ...DEFAULT_GENERATION, resolution: '480P' };

/** A fresh emulator with the scenario's timings; the seed makes its draws the same for every pipeline. */
async function emulatorFor(cfg: PipelineConfig, opts: BenchOptions, requests: RequestLog, workDir: string): Promise<{ emulator: Emulator; timings: ScaledTimings }> {
  const timings = scaledTimings(cfg.latency, opts.timeFactor, seededRandom(opts.seed));
  const emulator = await startEmulator({
    pendingMs: timings.pendingMs,
    runningMsSampler: timings.runningMs,
    videoSeconds: 1,
    workDir,
    log: requests.log,
  });
  return { emulator, timings };
}

async function measureOurs(label: string, cfg: PipelineConfig, opts: BenchOptions): Promise<RunMetrics> {
  process.stdout.write(`${label}: preparing ${cfg.shots} shots… `);
  const root = await mkdtemp(path.join(os.tmpdir(), 'i2v-bench-'));
  const requests = new RequestLog();
  const folder = await makeRunFolder(root, cfg.shots, cfg.image, opts.seed);
  // The server's SQLite database goes to memory when it can, so this machine's disk-sync speed is not measured.
  const stateRoot = existsSync('/dev/shm') ? await mkdtemp('/dev/shm/i2v-bench-') : path.join(root, 'temporal');
  const [{ emulator }, temporal] = await Promise.all([
    emulatorFor(cfg, opts, requests, path.join(root, 'emulator')),
    startEmbeddedServer({ stateDir: stateRoot, ip: '127.0.0.1', port: 0, uiPort: 0 }),
  ]);
  const serverPid = findProcess(stateRoot);
  const serverCpuAtStart = serverPid ? processUsage(serverPid).cpuSeconds : NaN;
  try {
    process.stdout.write('running… ');
    const settings: RunSettings = {
      generation: GENERATION,
      deadlineSeconds: Math.max(60, Math.round(DEFAULTS.deadlineSeconds * opts.timeFactor)),
      poll: scalePollSchedule(DEFAULT_POLL_SCHEDULE, opts.timeFactor),
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
    const metrics = assemble({
      cfg, label, pipeline: 'ours', folderBytes: folder.imageBytes, startedAt: run.startedAt, doneAt, commandAt: run.finishedAt,
      succeeded: run.summary.succeeded, failed: run.summary.failed, ready, lastReadyFileWorkMs: fileWorkMs, requests, emulator, process: run.worker, idlePeakRssMb: run.workerIdlePeakRssMb, serverCpuSeconds,
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
    console.log(`done in ${metrics.commandSeconds} s`);
    return metrics;
  } finally {
    await temporal.close();
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

async function measureNaive(label: string, cfg: PipelineConfig, opts: BenchOptions): Promise<RunMetrics> {
  process.stdout.write(`${label}: preparing ${cfg.shots} shots… `);
  const root = await mkdtemp(path.join(os.tmpdir(), 'i2v-bench-'));
  const requests = new RequestLog();
  const folder = await makeRunFolder(root, cfg.shots, cfg.image, opts.seed);
  const { emulator } = await emulatorFor(cfg, opts, requests, path.join(root, 'emulator'));
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
  process: ProcessUsage; idlePeakRssMb?: number; serverCpuSeconds?: number; history?: HistoryMetrics;
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
    serverCpuSeconds: x.serverCpuSeconds,
    history: x.history,
  };
}

function checkTargets(runs: RunMetrics[]): Target[] {
  const targets: Target[] = [];
  const ours = runs.find((r) => r.scenario === 'default' && r.pipeline === 'ours');
  const naive = runs.find((r) => r.scenario === 'default' && r.pipeline === 'naive');
  if (ours && naive) {
    targets.push({ target: 'makespan within 1.10× the ideal', met: ours.makespanOverIdeal <= 1.1, evidence: `${ours.makespanSeconds} s / ${ours.idealSeconds} s = ${ours.makespanOverIdeal}×` });
    targets.push({ target: 'makespan no worse than the naive baseline', met: ours.makespanSeconds <= naive.makespanSeconds, evidence: `${ours.makespanSeconds} s vs ${naive.makespanSeconds} s` });
    targets.push({
      target: 'polls per task at most half the baseline\'s', met: ours.pollsPerTask.mean <= naive.pollsPerTask.mean / 2,
      evidence: `${ours.pollsPerTask.mean} vs ${naive.pollsPerTask.mean} (${round(ours.pollsPerTask.mean / naive.pollsPerTask.mean, 2)}×)`,
    });
    targets.push({
      target: 'detection lag p95 no worse than the baseline\'s', met: ours.detectionLagSeconds.p95 <= naive.detectionLagSeconds.p95,
      evidence: `${ours.detectionLagSeconds.p95} s vs ${naive.detectionLagSeconds.p95} s`,
    });
  }
  const scale = runs.find((r) => r.scenario === 'scale');
  if (scale?.history) {
    const perRun = Math.max(...scale.history.episodeEventsPerRun);
    targets.push({ target: `${scale.shots} shots complete`, met: scale.succeeded === scale.shots, evidence: `${scale.succeeded} succeeded, ${scale.failed} failed` });
    targets.push({ target: 'worker peak RSS under 400 MB', met: scale.process.peakRssMb < 400, evidence: `${scale.process.peakRssMb} MB` });
    targets.push({ target: 'no shot workflow over 200 history events', met: scale.history.shotEvents.max <= 200, evidence: `max ${scale.history.shotEvents.max}` });
    targets.push({
      target: 'episode workflow under 10,000 events per run', met: perRun < 10_000,
      evidence: `${scale.history.episodeRuns} run(s): ${scale.history.episodeEventsPerRun.join(' + ')} events`,
    });
  }
  const [small, large] = runs.filter((r) => r.scenario === 'payload');
  if (small?.history && large?.history) {
    const a = small.history.shotBytes.p50;
    const b = large.history.shotBytes.p50;
    const diff = Math.abs(b - a) / a;
    targets.push({
      target: 'history bytes per shot do not grow with image size (within 5 %)', met: diff <= 0.05,
      evidence: `p50 ${a} B (${formatBytes(small.inputImageBytesP50)} images) vs ${b} B (${formatBytes(large.inputImageBytesP50)} images): ${round(diff * 100, 2)} %; `
        + `events p50 ${small.history.shotEvents.p50} vs ${large.history.shotEvents.p50}`,
    });
  }
  return targets;
}

function formatTable(runs: RunMetrics[]): string {
  const d = (x: Distribution, unit = '') => `${x.p50}${unit} / ${x.p95}${unit}`;
  const rows: Array<[string, (r: RunMetrics) => string]> = [
    ['shots ok / failed', (r) => `${r.succeeded} / ${r.failed}`],
    ['max in flight', (r) => (r.maxInFlight === null ? 'all' : String(r.maxInFlight))],
    ['input image (p50)', (r) => formatBytes(r.inputImageBytesP50)],
    ['submissions s (first – last)', (r) => `${r.submitSeconds.first} – ${r.submitSeconds.last}`],
    ['last task ready s', (r) => String(r.lastReadySeconds)],
    ['makespan s (all shots done)', (r) => String(r.makespanSeconds)],
    ['ideal s (last ready + its files)', (r) => String(r.idealSeconds)],
    ['makespan / ideal', (r) => `${r.makespanOverIdeal}×`],
    ['command s (incl. validation, reports)', (r) => String(r.commandSeconds)],
    ['detection lag s p50 / p95', (r) => d(r.detectionLagSeconds)],
    ['detection lag s max', (r) => String(r.detectionLagSeconds.max)],
    ['polls per task mean (p95)', (r) => `${r.pollsPerTask.mean} (${r.pollsPerTask.p95})`],
    ['POSTs per shot', (r) => String(r.postsPerShot)],
    ['video GETs per shot', (r) => String(r.downloadsPerShot)],
    ['peak RSS MB (worker / baseline)', (r) => String(r.process.peakRssMb)],
    ['worker peak RSS MB before any work', (r) => (r.idlePeakRssMb === undefined ? '–' : String(r.idlePeakRssMb))],
    ['CPU s (process + ffmpeg children)', (r) => `${r.process.cpuSeconds} + ${r.process.childCpuSeconds}`],
    ['Temporal server CPU s', (r) => (r.serverCpuSeconds === undefined ? '–' : String(r.serverCpuSeconds))],
    ['shot history events p50 / max', (r) => (r.history ? `${r.history.shotEvents.p50} / ${r.history.shotEvents.max}` : '–')],
    ['shot history bytes p50 / max', (r) => (r.history ? `${r.history.shotBytes.p50} / ${r.history.shotBytes.max}` : '–')],
    ['shot payload bytes p50 / max', (r) => (r.history ? `${r.history.shotPayloadBytes.p50} / ${r.history.shotPayloadBytes.max}` : '–')],
    ['episode runs (continue-as-new)', (r) => (r.history ? String(r.history.episodeRuns) : '–')],
    ['episode events per run', (r) => (r.history ? r.history.episodeEventsPerRun.join(' + ') : '–')],
    ['episode bytes per run', (r) => (r.history ? r.history.episodeBytesPerRun.map(formatBytes).join(' + ') : '–')],
  ];
  const header = ['', ...runs.map((r) => r.label)];
  const body = rows.map(([name, f]) => [name, ...runs.map(f)]);
  const widths = header.map((_, i) => Math.max(...[header, ...body].map((row) => (row[i] ?? '').length)));
  const line = (row: string[]) => `| ${row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(header), `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...body.map(line)].join('\n');
}

/** Where a shot's time goes in the pipeline: per activity, mean per shot, waiting for a worker slot vs running. */
function formatActivities(runs: RunMetrics[]): string {
  const ours = runs.filter((r) => r.history);
  const names = [...new Set(ours.flatMap((r) => Object.keys(r.history!.activities)))];
  const lines = ['Activities, mean per shot: calls, s waiting for a worker slot + s running'];
  for (const name of names) {
    const cells = ours.map((r) => {
      const a = r.history!.activities[name];
      return `${r.label}: ${a ? `${a.calls} × ${a.queueSeconds} + ${a.runSeconds}` : '–'}`;
    });
    lines.push(`  ${name.padEnd(15)} ${cells.join('   ')}`);
  }
  return lines.join('\n');
}

function formatModel(outcomes: ScheduleOutcome[], timeFactor: number): string {
  const lines = [`Poll schedules alone (no infrastructure; real seconds, × ${timeFactor} to compare with the table):`];
  for (const o of outcomes) {
    lines.push(`  ${o.schedule.padEnd(58)} ${String(o.pollsPerTask).padStart(6)} polls/task, lag p50 ${o.detectionLagSeconds.p50} s, p95 ${o.detectionLagSeconds.p95} s`);
  }
  return lines.join('\n');
}

function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '–';
  if (n >= 1e6) return `${round(n / 1e6, 2)} MB`;
  if (n >= 1e3) return `${round(n / 1e3, 1)} KB`;
  return `${n} B`;
}

function parseOptions(argv: string[]): BenchOptions {
  const positive = (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
    return n;
  };
  const fraction = (value: string) => {
    const n = Number(value);
    if (!(n > 0 && n <= 1)) throw new InvalidArgumentError('expected a number in (0, 1], e.g. 0.1 or 1/60');
    return n;
  };
  const program = new Command('bench')
    .description('Benchmark the pipeline against a naive baseline on the emulator (see bench/README.md).')
    .addOption(new Option('--scenario <name>', 'default (pipeline vs naive), scale, payload, or all').choices(['default', 'scale', 'payload', 'all']))
    .option('--shots <n>', 'shots in the default scenario (up to 1000)', positive, 200)
    .addOption(new Option('--latency <model>', 'generation latency of the default scenario').choices(['real', 'near-zero', 'fixed']).default('real'))
    .option('--time-factor <f>', 'multiplies every real-service interval (a fraction like 1/60 is accepted)', (v) => fraction(String(evalFraction(v))), 0.5)
    .option('--seed <n>', 'seed of the latency draws', positive, 20_240_601)
    .option('--max-in-flight <n>', 'our maxInFlight in the default scenario (default: all shots)', positive)
    .option('--scale-shots <n>', 'shots in the scale scenario', positive, 1000)
    .option('--scale-max-in-flight <n>', 'our maxInFlight in the scale scenario', positive, 100)
    .option('--payload-shots <n>', 'shots per image size in the payload scenario', positive, 20)
    .option('--submit-rate <n>', 'our submissions per second (the baseline submits all at once)', positive, 1000)
    .option('--keep', 'keep the temporary run folders and servers\' state')
    .parse(argv);
  const flags = program.opts<{
    scenario?: 'default' | 'scale' | 'payload' | 'all'; shots: number; latency: LatencyModel; timeFactor: number; seed: number; maxInFlight?: number;
    scaleShots: number; scaleMaxInFlight: number; payloadShots: number; submitRate: number; keep?: boolean;
  }>();
  if (flags.shots > 1000) throw new InvalidArgumentError('--shots is at most 1000');
  // Naming the default scenario's shots or latency without a scenario runs just that comparison.
  const explicit = program.getOptionValueSource('shots') === 'cli' || program.getOptionValueSource('latency') === 'cli';
  const scenario = flags.scenario ?? (explicit ? 'default' : 'all');
  return {
    scenarios: scenario === 'all' ? [...SCENARIOS] : [scenario],
    scenarioLabel: scenario,
    shots: flags.shots,
    latency: flags.latency,
    timeFactor: flags.timeFactor,
    seed: flags.seed,
    maxInFlight: flags.maxInFlight,
    scaleShots: flags.scaleShots,
    scaleMaxInFlight: flags.scaleMaxInFlight,
    payloadShots: flags.payloadShots,
    submitRate: flags.submitRate,
    keep: flags.keep ?? false,
  };
}

/** "0.1" or "1/60". */
function evalFraction(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(\d+(?:\.\d+)?)\s*$/.exec(text);
  return m ? Number(m[1]) / Number(m[2]) : Number(text);
}

main(process.argv).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(2);
  },
);
