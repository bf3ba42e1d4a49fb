/**
 * `i2v run`: scan the run folder, start (or re-attach to) one episode workflow per episode, show progress,
 * and summarise. Also the engine behind `demo`.
 */
import { setMaxListeners } from 'node:events';
import { existsSync } from 'node:fs';
import type { WorkflowHandle } from '@temporalio/client';
import type { ProviderConfig } from '../config';
import { outputPaths, videosDir } from '../runs/paths';
import type { RunPlan } from '../runs/scan';
import { sweepLeftovers } from '../runs/sweep';
import { DEFAULT_IMAGE_LIMITS } from '../media/image';
import { preflight, recordInputErrors } from './validate';
import { estimateShotCost } from '../pricing';
import { readTaskRecord } from '../runs/taskRecord';
import { connectTemporal, runUiUrl, workflowUiUrl, type TemporalHandle } from '../temporal/connection';
import { episodeSearchAttributes } from '../workflows/searchAttributes';
import { createWorker, stopWorker, TASK_QUEUE } from '../worker';
import { episodeWorkflowId } from '../workflows/ids';
import { episodeProgressQuery } from '../workflows/messages';
import type { episodeWorkflow } from '../workflows/episode';
import type { EpisodeResult } from '../workflows/types';
import { episodeInput, episodeShare, type RunSettings } from './plan';
import { createProgressPrinter, formatSummary } from './progress';

export interface RunOptions {
  episodes?: number[];
  provider: ProviderConfig;
  settings: RunSettings;
  /** An existing Temporal connection (tests, demo); otherwise `connectTemporal()`. */
  temporal?: TemporalHandle;
  out?: NodeJS.WriteStream;
  /** Progress refresh interval. */
  refreshMs?: number;
  /** Aborting stops waiting and shuts this process's worker down; the workflows keep going on the next run. */
  signal?: AbortSignal;
  /** Refuse to start when any input has a problem (default: skip those shots). */
  strict?: boolean;
  /** Cut prompts longer than the model reads instead of skipping the shot. */
  truncatePrompts?: boolean;
  /** Start a worker in this process (default true); false only starts the workflows. */
  worker?: boolean;
  /** Paid submissions per second across all workers (this process's worker sets it for the cluster). */
  submitsPerSecond?: number;
}

export interface RunSummary {
  plan: RunPlan;
  results: EpisodeResult[];
  succeeded: number;
  failed: number;
}

export async function runCommand(runDir: string, opts: RunOptions): Promise<RunSummary> {
  const out = opts.out ?? process.stdout;
  // Validation first, before anything is paid for: shots with input errors are reported, recorded in
  // tasks.json and left out (or, with --strict, nothing starts).
  const { plan, report, asIs } = await preflight(runDir, {
    episodes: opts.episodes,
    generation: opts.settings.generation,
    maxInFlight: opts.settings.maxInFlight,
    strict: opts.strict ?? false,
    truncatePrompts: opts.truncatePrompts ?? false,
    imageLimits: { ...DEFAULT_IMAGE_LIMITS, upscaleSmall: opts.settings.upscaleSmall ?? false },
    out,
  });
  await recordInputErrors(plan.runDir, report);
  await sweepLeftovers(videosDir(plan.runDir));
  const shotCount = plan.episodes.reduce((n, e) => n + e.shots.length, 0);
  out.write(`Run ${plan.runId}: ${plan.episodes.length} episode(s), ${shotCount} shot(s) to generate or already done.\n`);

  const temporal = opts.temporal ?? (await connectTemporal());
  // Without a worker of its own, `run` only starts the workflows; `i2v worker` processes do the work.
  const worker = opts.worker === false ? undefined : await createWorker({
    connection: temporal.nativeConnection, namespace: temporal.namespace, provider: opts.provider, queues: opts.settings.queues, submitsPerSecond: opts.submitsPerSecond,
  });
  const workerRun = worker?.run();
  let stopCalls = (): void => undefined;
  let refreshing: Promise<void> = Promise.resolve();
  try {
    const records = await readTaskRecord(plan.runDir);
    const started: Array<{ name: string; handle: WorkflowHandle<typeof episodeWorkflow> }> = [];
    const results: EpisodeResult[] = [];
    const settings = { ...opts.settings, maxInFlight: episodeShare(opts.settings, plan.episodes.length) };
    for (const episode of plan.episodes) {
      const input = episodeInput(plan, episode, records, (shot) => outputsPresent(plan.runDir, shot.episode, shot.shot), settings, asIs);
      if (input.shots.length === 0) continue;
      const workflowId = episodeWorkflowId(plan.runId, episode.episode);
      if (input.done.length === input.shots.length && !(await isRunning(temporal, workflowId))) {
        results.push({ episode: episode.episode, total: input.shots.length, succeeded: input.done.length, failed: 0, shots: input.done });
        continue;
      }
      if (await isRunning(temporal, workflowId)) {
        out.write(`${episode.name} is already running (started earlier): following it; it keeps the shots and settings it started with.\n`);
      }
      const handle = await temporal.client.workflow.start<typeof episodeWorkflow>('episodeWorkflow', {
        taskQueue: TASK_QUEUE,
        workflowId,
        args: [{ ...input, searchAttributes: temporal.searchAttributes }],
        workflowIdConflictPolicy: 'USE_EXISTING',
        staticSummary: `${episode.name} of ${plan.runId}: ${input.shots.length} shots`,
        typedSearchAttributes: temporal.searchAttributes ? episodeSearchAttributes(plan.runId, episode.episode) : undefined,
      });
      started.push({ name: episode.name, handle });
      if (temporal.uiUrl) out.write(`${episode.name}: ${workflowUiUrl(temporal.uiUrl, temporal.namespace, workflowId)}\n`);
    }
    if (temporal.uiUrl && temporal.searchAttributes && started.length > 0) {
      out.write(`All workflows of this run: ${runUiUrl(temporal.uiUrl, temporal.namespace, plan.runId)}\n`);
    }

    const printer = createProgressPrinter(out, { costPerShot: estimateShotCost(opts.settings.generation) });
    const pending = new Set(started.map((s) => s.name));
    // Long-polls for results are cancelled before the connection closes (on Ctrl-C, say).
    const calls = new AbortController();
    stopCalls = () => calls.abort();
    // The SDK adds an abort listener per gRPC call and never removes it, so each call gets a signal of its own,
    // linked to `calls`, that is dropped with it (a long run makes thousands of progress queries).
    const cancellable = async <T>(fn: () => Promise<T>): Promise<T> => {
      const call = new AbortController();
      // A result wait is one call per long poll, for as long as the episode runs.
      setMaxListeners(0, call.signal);
      const abort = () => call.abort();
      calls.signal.addEventListener('abort', abort, { once: true });
      try {
        return await temporal.client.withAbortSignal(call.signal, fn);
      } finally {
        calls.signal.removeEventListener('abort', abort);
      }
    };
    const finished = Promise.all(
      started.map(async ({ name, handle }) => {
        try {
          return await cancellable(() => handle.result());
        } catch (err) {
          if (calls.signal.aborted) throw new RunInterrupted('interrupted');
          // The episode workflow itself failed or was terminated: report it, keep the other episodes' results.
          out.write(`! ${name}: ${(err as Error).message}${(err as Error).cause ? ` (${((err as Error).cause as Error).message})` : ''}\n`);
          return episodeFailure(name, plan, err as Error);
        } finally {
          pending.delete(name);
        }
      }),
    );
    const refresh = async () => {
      for (const { name, handle } of started) {
        if (!pending.has(name) || calls.signal.aborted) continue;
        try {
          printer.update(name, await cancellable(() => handle.query(episodeProgressQuery)));
        } catch {
          // The workflow may be between runs or just finished; the next refresh catches up.
        }
      }
    };
    // A refresh still under way when the run ends is cancelled and awaited, so no call outlives the connection.
    const timer = setInterval(() => {
      refreshing = refreshing.then(refresh);
    }, opts.refreshMs ?? 2000);
    finished.catch(() => undefined); // if interrupted, nobody awaits it any more
    try {
      results.push(...(await Promise.race([finished, aborted(opts.signal)])));
    } finally {
      clearInterval(timer);
    }
    printer.done();

    results.sort((a, b) => a.episode - b.episode);
    for (const r of results) for (const line of formatSummary(`Episode-${String(r.episode).padStart(2, '0')}`, r)) out.write(`${line}\n`);
    return { plan, results, succeeded: sum(results, (r) => r.succeeded), failed: sum(results, (r) => r.failed) };
  } finally {
    stopCalls();
    await refreshing;
    if (worker) stopWorker(worker);
    await workerRun;
    if (!opts.temporal) await temporal.close();
  }
}

function episodeFailure(name: string, plan: RunPlan, err: Error): EpisodeResult {
  const episode = plan.episodes.find((e) => e.name === name);
  const shots = (episode?.shots ?? []).map((s) => ({
    key: s.key, episode: s.episode, shot: s.shot, take: 0, status: 'FAILED' as const, polls: 0, errorCode: 'EpisodeFailed', errorMessage: err.message,
  }));
  return { episode: episode?.episode ?? 0, total: shots.length, succeeded: 0, failed: shots.length, shots };
}

export class RunInterrupted extends Error {
  override readonly name = 'RunInterrupted';
}

function aborted(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    if (!signal) return;
    if (signal.aborted) reject(new RunInterrupted('interrupted'));
    signal.addEventListener('abort', () => reject(new RunInterrupted('interrupted')), { once: true });
  });
}

function outputsPresent(runDir: string, episode: number, shot: number): boolean {
  const paths = outputPaths(runDir, episode, shot);
  return existsSync(paths.videoPath) && existsSync(paths.thumbnailPath);
}

async function isRunning(temporal: TemporalHandle, workflowId: string): Promise<boolean> {
  try {
    const d = await temporal.client.workflow.getHandle(workflowId).describe();
    return d.status.name === 'RUNNING';
  } catch {
    return false;
  }
}

function sum<T>(xs: T[], f: (x: T) => number): number {
  return xs.reduce((n, x) => n + f(x), 0);
}
