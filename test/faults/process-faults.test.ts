/**
 * Crashes of real processes in the middle of a 30-shot episode: worker processes SIGKILLed (once right after the
 * provider accepted a submission, then at random moments), and the Temporal server SIGKILLed and started again
 * on its SQLite file. Whatever happens, no shot take is paid
 * twice, every shot that can succeed ends with a valid video and thumbnails, nothing half-written is left, and
 * tasks.json agrees with the files. The kill schedule comes from a seed printed with the results
 * (I2V_FAULT_SEED=<n> repeats it).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { episodeInput, type RunSettings } from '../../src/cli/plan';
import { DEFAULT_GENERATION } from '../../src/config';
import { groupSubmissions, startEmulator, type Emulator } from '../../src/emulator';
import { outputPaths } from '../../src/runs/paths';
import { readTaskRecord } from '../../src/runs/taskRecord';
import { scanRun } from '../../src/runs/scan';
import { ensureSearchAttributes } from '../../src/temporal/connection';
import { TASK_QUEUE } from '../../src/worker';
import { episodeWorkflowId } from '../../src/workflows/ids';
import { episodeSearchAttributes } from '../../src/workflows/searchAttributes';
import type { EpisodeResult } from '../../src/workflows/types';
import { makeRunFolder } from '../helpers/runFolder';
import {
  ensureBuilt, freePort, OutputTail, startTemporalServer, startWorkerProcess, waitFor,
  type TemporalServer, type WorkerProcess,
} from './processes';
import { seededRandom } from '../../src/emulator/random';
import { leftovers, recordVersusDisk, table } from './support';

const SHOTS = 30;
const seed = Number(process.env.I2V_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
const random = seededRandom(seed);
const between = (min: number, max: number): number => min + random() * (max - min);

const settings: RunSettings = {
  generation: { ...DEFAULT_GENERATION, resolution: '480P' },
  deadlineSeconds: 600,
  poll: { initialSeconds: 0.5, factor: 1.5, maxSeconds: 2 },
  maxInFlight: 4,
};

/**
 * Work cut off by a killed worker is retried only when its activity times out (up to 2 min for the activities
 * without heartbeats, see src/workflows/shot.ts), so a run with crashes can take minutes.
 */
const RESULT_TIMEOUT_MS = 330_000;
const TEST_TIMEOUT_MS = 420_000;

const EventType = temporal.api.enums.v1.EventType;
const output = new OutputTail(400);
const summaries: Array<Record<string, string | number>> = [];
let emulator: Emulator;
let scratch: string;
let server: TemporalServer | undefined;
const workers = new Set<WorkerProcess>();
/** Called with each emulator request log line (written once the response has been handed to the socket). */
let onEmulatorLog: ((line: string) => void) | undefined;

beforeAll(async () => {
  console.log(`process faults: seed ${seed} (I2V_FAULT_SEED=${seed} repeats this kill schedule)`);
  await ensureBuilt();
  scratch = await mkdtemp(path.join(tmpdir(), 'i2v-process-faults-'));
  // 300–1500 ms per task, so tasks finish out of order; the same seed gives the same latencies.
  emulator = await startEmulator({
    pendingMs: 300, runningMs: 0, runningJitterMs: 1200, random: seededRandom(seed + 1), videoSeconds: 1, log: (line) => onEmulatorLog?.(line),
  });
});

afterEach(async (ctx) => {
  await stopAll();
  if (ctx.task.result?.state === 'fail') console.log(`--- last process output (seed ${seed}) ---\n${output.lines.slice(-150).join('\n')}`);
});

afterAll(async () => {
  await stopAll();
  await emulator?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
  console.log(`\nProcess faults (seed ${seed}):\n${table(summaries)}\n`);
});

async function stopAll(): Promise<void> {
  for (const w of workers) {
    w.child.kill('SIGKILL');
    await w.exited;
  }
  workers.clear();
  await server?.kill();
  server = undefined;
}

let workerCount = 0;
function startWorker(address: string): WorkerProcess {
  const worker = startWorkerProcess(address, emulator.baseUrl, output, `worker-${++workerCount}`);
  workers.add(worker);
  void worker.exited.then(() => workers.delete(worker));
  return worker;
}

/**
 * Starts the episode as `i2v run` does: plan from the folder and tasks.json, search attributes registered, the
 * deterministic workflow id, USE_EXISTING.
 */
async function startEpisode(connection: Connection, client: Client, runDir: string): Promise<{ handle: WorkflowHandle; runId: string; planned: Map<string, string> }> {
  const plan = await scanRun(runDir);
  const episode = plan.episodes[0]!;
  const records = await readTaskRecord(plan.runDir);
  const outputsPresent = (shot: { episode: number; shot: number }) => {
    const out = outputPaths(plan.runDir, shot.episode, shot.shot);
    return existsSync(out.videoPath) && existsSync(out.thumbnailPath);
  };
  const input = episodeInput(plan, episode, records, outputsPresent, settings);
  const searchAttributes = await ensureSearchAttributes(connection, 'default');
  const handle = await client.workflow.start('episodeWorkflow', {
    taskQueue: TASK_QUEUE,
    workflowId: episodeWorkflowId(plan.runId, episode.episode),
    args: [{ ...input, searchAttributes }],
    workflowIdConflictPolicy: 'USE_EXISTING',
    staticSummary: `${episode.name} of ${plan.runId}: ${input.shots.length} shots`,
    typedSearchAttributes: searchAttributes ? episodeSearchAttributes(plan.runId, episode.episode) : undefined,
  });
  return { handle, runId: plan.runId, planned: new Map(episode.shots.map((s) => [s.prompt, s.key])) };
}

/** Waits for the workflow to close, riding out a server that is down for a while. */
async function episodeResult(handle: WorkflowHandle, timeoutMs: number): Promise<EpisodeResult> {
  await waitFor(
    `episode ${handle.workflowId} to finish`,
    async () => {
      try {
        return (await handle.describe()).status.name !== 'RUNNING';
      } catch {
        return false; // the server is restarting
      }
    },
    timeoutMs,
    500,
  );
  return (await handle.result()) as EpisodeResult;
}

interface Retried {
  activity: string;
  attempt: number;
  why: string;
  /** From the first scheduling of the activity to the start of the attempt that ran. */
  waitedSeconds: number;
}

/** Activities that needed more than one attempt across every workflow of the run, and why (from the histories). */
async function retriedActivities(client: Client): Promise<Retried[]> {
  const retried: Retried[] = [];
  for await (const wf of client.workflow.list()) {
    const events = (await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory()).events ?? [];
    const scheduled = new Map<string, { name: string; at: number }>();
    for (const e of events) {
      const at = Number(e.eventTime?.seconds ?? 0) + (e.eventTime?.nanos ?? 0) / 1e9;
      if (e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) {
        scheduled.set(String(e.eventId), { name: e.activityTaskScheduledEventAttributes?.activityType?.name ?? '?', at });
      }
      const started = e.activityTaskStartedEventAttributes;
      if (e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED && started && (started.attempt ?? 1) > 1) {
        const s = scheduled.get(String(started.scheduledEventId));
        const failure = started.lastFailure;
        const timeout = failure?.timeoutFailureInfo?.timeoutType;
        const why = timeout ? temporal.api.enums.v1.TimeoutType[timeout] : (failure?.message ?? '?').slice(0, 80);
        retried.push({ activity: s?.name ?? '?', attempt: started.attempt ?? 0, why, waitedSeconds: Math.round(at - (s?.at ?? at)) });
      }
    }
  }
  return retried;
}

interface RunReport {
  /** Shots that ended SUBMIT_UNCERTAIN (allowed: a crash between paying and recording the task id). */
  uncertain: string[];
  /** Each list below must be empty. */
  problems: {
    otherFailures: string[];
    /** More accepted submissions for a shot than the takes it made. */
    duplicates: string[];
    /** A finished shot whose task is not one the provider billed for it. */
    wrongTask: string[];
    /** tasks.json against the files on disk. */
    disagreements: string[];
    /** Half-written or temporary files under 08_generated_videos. */
    leftovers: string[];
  };
}

/** What both tests check once the episode has finished. */
async function inspectRun(runDir: string, result: EpisodeResult, planned: Map<string, string>): Promise<RunReport> {
  const uncertain = result.shots.filter((s) => s.errorCode === 'SUBMIT_UNCERTAIN').map((s) => s.key);
  const otherFailures = result.shots.filter((s) => s.status === 'FAILED' && s.errorCode !== 'SUBMIT_UNCERTAIN').map((s) => `${s.key}: [${s.errorCode}] ${s.errorMessage}`);
  if (result.total !== SHOTS) otherFailures.push(`the episode reported ${result.total} of ${SHOTS} shots`);

  // Zero duplicate paid submissions: per shot, at most one accepted submission per take it made (prompts are unique per shot).
  const takes = new Map(result.shots.map((s) => [s.key, s.take]));
  const paid = groupSubmissions(emulator.ledger().submissions).filter((g) => planned.has(g.prompt));
  const duplicates = paid
    .filter((g) => g.submissions.length > (takes.get(planned.get(g.prompt)!) ?? 1))
    .map((g) => `${planned.get(g.prompt)}: ${g.submissions.length} paid (${g.submissions.map((s) => s.taskId).join(', ')})`);
  const wrongTask = result.shots
    .filter((s) => s.status === 'SUCCESS' && !paid.find((g) => planned.get(g.prompt) === s.key)?.submissions.some((p) => p.taskId === s.taskId))
    .map((s) => `${s.key}: task ${s.taskId}`);

  const { record, disagreements } = await recordVersusDisk(runDir);
  const problems = disagreements.map((d) => `${d.key}: ${d.problem}`);
  for (const shot of result.shots) {
    if (record[shot.key]?.status !== shot.status) problems.push(`${shot.key}: tasks.json says ${record[shot.key]?.status ?? 'nothing'}, the workflow ${shot.status}`);
  }
  return { uncertain, problems: { otherFailures, duplicates, wrongTask, disagreements: problems, leftovers: await leftovers(runDir) } };
}

function expectClean(report: RunReport): void {
  expect(report.problems).toEqual({ otherFailures: [], duplicates: [], wrongTask: [], disagreements: [], leftovers: [] });
}

function summaryRow(scenario: string, seconds: number, result: EpisodeResult, report: RunReport, retried: Retried[]): Record<string, string | number> {
  return {
    scenario, seconds, succeeded: result.succeeded, failed: result.failed,
    SUBMIT_UNCERTAIN: report.uncertain.join(' ') || 'none',
    duplicates: report.problems.duplicates.length,
    leftovers: report.problems.leftovers.join(' ') || 'none',
    'retried after crash': retried.map((r) => `${r.activity} ${r.why.replace('TIMEOUT_TYPE_', '')} +${r.waitedSeconds}s`).join(', ') || 'none',
  };
}

describe('process crashes mid-run', () => {
  it('survives worker processes SIGKILLed right after a paid submission and at random moments', async () => {
    const started = Date.now();
    server = await startTemporalServer(await freePort(), path.join(scratch, 'workers.db'), output);
    const connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    try {
      const runDir = await makeRunFolder(Array.from({ length: SHOTS }, (_, i) => ({ episode: 1, shot: i + 1, prompt: `shot ${i + 1}: the camera drifts ${i % 2 ? 'left' : 'right'}` })));
      const { handle, planned } = await startEpisode(connection, client, runDir);

      const kills: string[] = [];
      const traffic = () => {
        const l = emulator.ledger();
        return { posts: l.posts, gets: l.gets, downloads: l.downloads, paid: l.submissions.length };
      };
      const describeTraffic = (from: ReturnType<typeof traffic>) => {
        const now = traffic();
        return `+${now.posts - from.posts} POST, +${now.gets - from.gets} GET, +${now.downloads - from.downloads} video GET; ${now.paid} paid so far`;
      };

      // Kill 1: the moment the provider has accepted (and billed) the n-th submission, before the worker can
      // record the task id: the take's outcome is unknown to the pipeline, which must not pay for it again.
      {
        const nth = 1 + Math.floor(random() * 6);
        const worker = startWorker(server.address);
        const from = traffic();
        let killed = false;
        onEmulatorLog = (line) => {
          if (!killed && /^POST \S+ 200 /.test(line) && emulator.ledger().submissions.length - from.paid >= nth) {
            worker.child.kill('SIGKILL');
            killed = true;
          }
        };
        await waitFor(`paid submission ${nth} of this worker`, () => killed, 120_000, 50);
        onEmulatorLog = undefined;
        await worker.exited;
        kills.push(`right after paid submission ${nth} was answered (${describeTraffic(from)})`);
      }

      // Kills 2–5: at a random moment once the new worker is busy (it has made a request, or 20 s have passed:
      // work cut off by a kill is only retried when its activity times out, and until then there may be none).
      for (let k = 2; k <= 5; k++) {
        const worker = startWorker(server.address);
        await worker.ready;
        const from = traffic();
        const busy = () => {
          const now = traffic();
          return now.posts + now.gets + now.downloads > from.posts + from.gets + from.downloads;
        };
        const wasBusy = await waitFor('the worker to make a request', busy, 20_000, 100).then(() => true, () => false);
        const delay = between(500, 3000);
        await sleep(delay); // the random moment of the crash
        worker.child.kill('SIGKILL');
        await worker.exited;
        kills.push(`${(delay / 1000).toFixed(1)} s after ${wasBusy ? 'its first request' : '20 s without a request'} (${describeTraffic(from)})`);
      }
      startWorker(server.address);
      const result = await episodeResult(handle, RESULT_TIMEOUT_MS);
      const report = await inspectRun(runDir, result, planned);
      const retried = await retriedActivities(client);

      const seconds = Math.round((Date.now() - started) / 1000);
      console.log(`worker kills:\n  ${kills.join('\n  ')}`);
      console.log(`SUBMIT_UNCERTAIN shots: ${report.uncertain.join(', ') || 'none'}`);
      console.log(`activities retried after a crash:\n${retried.length ? table(retried.map((r) => ({ ...r }))) : '(none)'}`);
      summaries.push(summaryRow('worker SIGKILL ×5', seconds, result, report, retried));
      expectClean(report);
    } finally {
      await connection.close();
    }
  }, TEST_TIMEOUT_MS);

  it('survives the Temporal server SIGKILLed mid-run and restarted on the same database', async () => {
    const started = Date.now();
    const port = await freePort();
    const dbFile = path.join(scratch, 'server.db');
    server = await startTemporalServer(port, dbFile, output);
    const connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    try {
      const runDir = await makeRunFolder(Array.from({ length: SHOTS }, (_, i) => ({ episode: 1, shot: i + 1, prompt: `镜头 ${i + 1}：人物${i % 2 ? '向左' : '向右'}转身` })));
      const { handle, planned } = await startEpisode(connection, client, runDir);
      const paidBefore = emulator.ledger().submissions.length;
      // A worker that dies with the server connection is replaced, as a supervisor (systemd, k8s) would.
      let restarts = 0;
      let stopping = false;
      const supervise = (worker: WorkerProcess): void => {
        void worker.exited.then(() => {
          if (stopping) return;
          restarts++;
          supervise(startWorker(server!.address));
        });
      };
      supervise(startWorker(server.address));

      const target = Math.round(between(5, 15));
      await waitFor(`${target} paid submissions before the server crash`, () => emulator.ledger().submissions.length - paidBefore >= target, 120_000);
      await sleep(between(0, 1500)); // the random moment of the crash
      await server.kill();
      const downMs = between(500, 3000);
      await sleep(downMs); // the server stays down for a random while
      server = await startTemporalServer(port, dbFile, output);

      const result = await episodeResult(handle, RESULT_TIMEOUT_MS);
      stopping = true;
      const report = await inspectRun(runDir, result, planned);
      const retried = await retriedActivities(client);

      const seconds = Math.round((Date.now() - started) / 1000);
      console.log(`server killed after ${target} paid submissions, down ${(downMs / 1000).toFixed(1)} s; worker restarts: ${restarts}`);
      console.log(`SUBMIT_UNCERTAIN shots: ${report.uncertain.join(', ') || 'none'}`);
      console.log(`activities retried after the crash:\n${retried.length ? table(retried.map((r) => ({ ...r }))) : '(none)'}`);
      summaries.push(summaryRow(`server SIGKILL after ${target} paid, down ${(downMs / 1000).toFixed(1)} s`, seconds, result, report, retried));
      expectClean(report);
    } finally {
      await connection.close();
    }
  }, TEST_TIMEOUT_MS);
});
