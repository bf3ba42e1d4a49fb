/**
 * Drives the real pipeline: `runCommand` (validation, one episode workflow, progress) in this process, and one
 * `i2v worker` process doing all the work, as a deployment would run it. Afterwards reads every shot workflow's
 * history and every run of the episode workflow from Temporal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { temporal as proto } from '@temporalio/proto';
import type { ProviderConfig } from '../src/config';
import type { RunSettings } from '../src/cli/plan';
import { runCommand, type RunSummary } from '../src/cli/run';
import type { TemporalHandle } from '../src/temporal/connection';
import { episodeWorkflowId, shotWorkflowId } from '../src/workflows/ids';
import { processUsage, sampleChildPeaks, type ProcessUsage } from './measure';

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'i2v.js');

export interface OursRun {
  startedAt: number;
  finishedAt: number;
  summary: RunSummary;
  worker: ProcessUsage;
  /** The worker's peak RSS once started and polling, before any work (MB). */
  workerIdlePeakRssMb: number;
  /** The settings that change its memory, as its environment holds them (MEMORY_SETTINGS). */
  workerMemorySettings: Record<string, string>;
}

/** Settings that move a worker's memory: glibc's arena count, and Node's flags (heap size). */
export const MEMORY_SETTINGS = ['MALLOC_ARENA_MAX', 'NODE_OPTIONS'] as const;

export async function runOurs(opts: {
  runDir: string;
  temporal: TemporalHandle;
  provider: ProviderConfig;
  settings: RunSettings;
  submitRate: number;
}): Promise<OursRun> {
  const worker = await startWorker(opts.temporal.address, opts.provider.baseUrl, opts.submitRate);
  try {
    const workerIdlePeakRssMb = processUsage(worker.pid!).peakRssMb;
    const workerMemorySettings = memorySettingsOf(worker.pid!);
    const children = sampleChildPeaks(worker.pid!);
    const startedAt = Date.now();
    const summary = await runCommand(opts.runDir, {
      provider: opts.provider, settings: opts.settings, temporal: opts.temporal, out: quiet(), worker: false,
    });
    const finishedAt = Date.now();
    return { startedAt, finishedAt, summary, worker: { ...processUsage(worker.pid!), childPeakRssMb: children.stop() }, workerIdlePeakRssMb, workerMemorySettings };
  } finally {
    await stopProcess(worker);
  }
}

/** What a running process's environment holds of MEMORY_SETTINGS (Linux's /proc; elsewhere nothing is known). */
function memorySettingsOf(pid: number): Record<string, string> {
  let environ: string;
  try {
    environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    return {};
  }
  return pickMemorySettings(Object.fromEntries(environ.split('\0').map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)])));
}

/** The MEMORY_SETTINGS an environment sets. */
export function pickMemorySettings(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(MEMORY_SETTINGS.flatMap((k) => (env[k] ? [[k, env[k]]] : [])));
}

/**
 * `i2v worker` against the bench's server, started as `npx i2v` starts it (bin/i2v.js as a program, whose first
 * line sets MALLOC_ARENA_MAX unless this process's environment has it), resolved once it polls. Its output is kept (the last few KB) and
 * shown only if it exits before being stopped.
 */
async function startWorker(address: string, baseUrl: string, submitRate: number): Promise<ChildProcess> {
  const child = spawn(BIN, ['worker', '--provider', 'emulator', '--base-url', baseUrl, '--submit-rate', String(submitRate)], {
    // The launcher execs `node` from PATH: this one, as recorded in the results.
    env: { ...process.env, TEMPORAL_ADDRESS: address, PATH: [path.dirname(process.execPath), process.env.PATH].filter(Boolean).join(path.delimiter) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (chunk: Buffer) => {
    out = (out + chunk.toString()).slice(-8000);
  };
  child.stderr!.on('data', keep);
  child.once('exit', (code, signal) => {
    if (!stopping.has(child)) console.error(`\nThe worker exited (${signal ?? `code ${code}`}):\n${out.trim()}`);
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      keep(chunk);
      if (out.includes('Worker polling')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the worker exited (code ${code}) before polling`)));
  });
  return child;
}

const stopping = new WeakSet<ChildProcess>();

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  stopping.add(child);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

function quiet(): NodeJS.WriteStream {
  return new Writable({ write: (_chunk, _enc, done) => done() }) as unknown as NodeJS.WriteStream;
}

/** One workflow run's history: size, and the times the benchmark needs. */
export interface HistoryFacts {
  events: number;
  /** The history as the server would send it (protobuf). */
  bytes: number;
  /** Payload data and metadata only (inputs, results, signals, memo, search attributes). */
  payloadBytes: number;
  /** Time of the first event (the run's start). */
  startedAt: number;
  /** Time of the last event (the run's close). */
  closedAt: number;
  /** Per activity type, summed over its calls: scheduled → started (waiting for a worker slot) and started → completed, ms. */
  activities: Record<string, ActivityTime>;
  continuedFromRunId?: string;
}

export interface ActivityTime {
  calls: number;
  queueMs: number;
  runMs: number;
}

export async function historyFacts(temporal: TemporalHandle, workflowId: string, runId?: string): Promise<HistoryFacts> {
  const history = await temporal.client.workflow.getHandle(workflowId, runId).fetchHistory();
  const events = history.events ?? [];
  const scheduled = new Map<string, { name: string; at: number; startedAt?: number }>();
  const activities: Record<string, ActivityTime> = {};
  for (const e of events) {
    const time = timestampMs(e.eventTime);
    const attrs = e.activityTaskScheduledEventAttributes;
    if (attrs) scheduled.set(String(e.eventId), { name: attrs.activityType?.name ?? '?', at: time });
    const started = e.activityTaskStartedEventAttributes && scheduled.get(String(e.activityTaskStartedEventAttributes.scheduledEventId));
    if (started) started.startedAt = time;
    const done = e.activityTaskCompletedEventAttributes && scheduled.get(String(e.activityTaskCompletedEventAttributes.scheduledEventId));
    if (done) {
      const a = (activities[done.name] ??= { calls: 0, queueMs: 0, runMs: 0 });
      a.calls++;
      a.queueMs += (done.startedAt ?? time) - done.at;
      a.runMs += time - (done.startedAt ?? time);
    }
  }
  const first = events[0]?.workflowExecutionStartedEventAttributes;
  return {
    events: events.length,
    bytes: proto.api.history.v1.History.encode(history).finish().length,
    payloadBytes: payloadBytes(history),
    startedAt: timestampMs(events[0]?.eventTime),
    closedAt: timestampMs(events[events.length - 1]?.eventTime),
    activities,
    continuedFromRunId: first?.continuedExecutionRunId || undefined,
  };
}

/** Every run of the episode workflow, oldest first (continue-as-new chains them). */
export async function episodeRuns(temporal: TemporalHandle, runId: string, episode: number): Promise<HistoryFacts[]> {
  const id = episodeWorkflowId(runId, episode);
  const runs: HistoryFacts[] = [];
  let run: string | undefined;
  do {
    const facts = await historyFacts(temporal, id, run);
    runs.unshift(facts);
    run = facts.continuedFromRunId;
  } while (run);
  return runs;
}

/** Shot workflow histories, fetched a few at a time. */
export async function shotHistories(temporal: TemporalHandle, summary: RunSummary): Promise<Map<string, HistoryFacts>> {
  const shots = summary.results.flatMap((r) => r.shots.filter((s) => !s.skipped));
  const out = new Map<string, HistoryFacts>();
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < shots.length) {
        const s = shots[next++]!;
        out.set(s.key, await historyFacts(temporal, shotWorkflowId(summary.plan.runId, s.episode, s.shot, s.take)));
      }
    }),
  );
  return out;
}

function timestampMs(t: { seconds?: unknown; nanos?: number | null } | null | undefined): number {
  if (!t) return NaN;
  return Number(String(t.seconds ?? 0)) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
}

/** Sums `data` and `metadata` of every Payload found anywhere in the history. */
function payloadBytes(node: unknown): number {
  if (node === null || typeof node !== 'object') return 0;
  if (node instanceof Uint8Array) return 0;
  if (Array.isArray(node)) return node.reduce((n: number, x) => n + payloadBytes(x), 0);
  const obj = node as Record<string, unknown>;
  if (obj.data instanceof Uint8Array && obj.metadata && typeof obj.metadata === 'object') {
    const meta = Object.entries(obj.metadata as Record<string, unknown>).reduce((n, [k, v]) => n + k.length + (v instanceof Uint8Array ? v.length : 0), 0);
    return obj.data.length + meta;
  }
  return Object.values(obj).reduce((n: number, x) => n + payloadBytes(x), 0);
}
