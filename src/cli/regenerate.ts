/**
 * `i2v regenerate`: a new take of one shot. If the episode is running, it is asked (an update) to queue the
 * take; otherwise a new run of the episode workflow starts for just that shot. Earlier takes are kept.
 */
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { ExitError, InputError } from '../errors';
import { scanRun } from '../runs/scan';
import { readTaskRecord } from '../runs/taskRecord';
import { TASK_QUEUE } from '../worker';
import { episodeWorkflowId, shotWorkflowId, shotWorkflowIdFor } from '../workflows/ids';
import { episodeProgressQuery, regenerateUpdate } from '../workflows/messages';
import { episodeSearchAttributes } from '../workflows/searchAttributes';
import type { episodeWorkflow } from '../workflows/episode';
import type { shotWorkflow } from '../workflows/shot';
import type { ShotResult, ShotSpec } from '../workflows/types';
import type { RunSettings } from './plan';

export interface RegenerateOptions {
  episode: number;
  shot: number;
  prompt?: string;
  settings: RunSettings;
  /** The server has our search attributes (TemporalHandle.searchAttributes). */
  searchAttributes: boolean;
}

/** Queues the new take and returns the ids of its shot workflow and of the episode workflow. */
export async function requestRegeneration(client: Client, runDir: string, opts: RegenerateOptions): Promise<{ workflowId: string; episodeWorkflowId: string; take: number }> {
  const plan = await scanRun(runDir, { episodes: [opts.episode] });
  const episode = plan.episodes.find((e) => e.episode === opts.episode);
  const planned = episode?.shots.find((s) => s.shot === opts.shot);
  if (!episode || !planned) {
    throw new InputError(`Episode ${opts.episode} shot ${opts.shot} is not in ${plan.runDir} (it needs an image and a prompt).`, 'shot-unknown', 'Check --episode/--shot against `i2v status`.');
  }
  const workflowId = episodeWorkflowId(plan.runId, opts.episode);
  const handle = client.workflow.getHandle<typeof episodeWorkflow>(workflowId);
  if (await isRunning(handle)) {
    try {
      const accepted = await handle.executeUpdate(regenerateUpdate, { args: [{ shot: opts.shot, prompt: opts.prompt }] });
      return { workflowId: accepted.workflowId, episodeWorkflowId: workflowId, take: accepted.take };
    } catch (err) {
      // Refused by the episode (e.g. it was started without that shot): say why.
      if (err instanceof WorkflowUpdateFailedError) throw new InputError(`The running episode refused: ${err.cause?.message ?? err.message}`, 'regenerate-refused');
      // Otherwise it may have finished between the check and the update; then start a new run below.
      if (await isRunning(handle)) throw err;
    }
  }
  const records = await readTaskRecord(plan.runDir);
  const take = (records[planned.key]?.take ?? 0) + 1;
  const spec: ShotSpec = { ...planned, prompt: opts.prompt ?? planned.prompt, take };
  await client.workflow.start<typeof episodeWorkflow>('episodeWorkflow', {
    taskQueue: TASK_QUEUE,
    workflowId,
    workflowIdConflictPolicy: 'USE_EXISTING',
    args: [{ runDir: plan.runDir, runId: plan.runId, episode: opts.episode, shots: [spec], done: [], ...opts.settings, searchAttributes: opts.searchAttributes }],
    typedSearchAttributes: opts.searchAttributes ? episodeSearchAttributes(plan.runId, opts.episode) : undefined,
    staticSummary: `${episode.name} of ${plan.runId}: regenerate shot ${opts.shot}`,
  });
  return { workflowId: shotWorkflowId(plan.runId, opts.episode, opts.shot, take), episodeWorkflowId: workflowId, take };
}

/**
 * Waits for the take, which may not have started yet (queued behind other shots). If the episode replaces it
 * with a newer take (an automatic retry after a transient failure, or another regenerate), follows that one.
 */
export async function waitForShot(client: Client, episodeWorkflowId: string, workflowId: string, signal?: AbortSignal): Promise<ShotResult> {
  let current = workflowId;
  for (;;) {
    const result = await untilAborted(signal, waitForWorkflow(client, current, signal));
    const newer = await newerTake(client, episodeWorkflowId, result);
    if (!newer) return result;
    current = newer;
  }
}

async function waitForWorkflow(client: Client, workflowId: string, signal?: AbortSignal): Promise<ShotResult> {
  for (;;) {
    try {
      const result = () => client.workflow.getHandle<typeof shotWorkflow>(workflowId).result();
      // Cancel the long-poll on Ctrl-C, before the connection closes under it.
      return await (signal ? client.withAbortSignal(signal, result) : result());
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError) || signal?.aborted) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** The workflow id of a later take of the same shot that the running episode has queued or started. */
async function newerTake(client: Client, episodeWorkflowId: string, result: ShotResult): Promise<string | undefined> {
  const handle = client.workflow.getHandle<typeof episodeWorkflow>(episodeWorkflowId);
  if (!(await isRunning(handle))) return undefined;
  const progress = await handle.query(episodeProgressQuery);
  const shot = progress.shots.find((s) => s.key === result.key);
  return shot && shot.take > result.take ? shotWorkflowIdFor(episodeWorkflowId, result.shot, shot.take) : undefined;
}

function untilAborted<T>(signal: AbortSignal | undefined, work: Promise<T>): Promise<T> {
  if (!signal) return work;
  return Promise.race([
    work,
    new Promise<never>((_, reject) => {
      const stop = () => reject(new ExitError('Interrupted; the new take keeps going in Temporal (see `i2v status`).', 130));
      if (signal.aborted) stop();
      signal.addEventListener('abort', stop, { once: true });
    }),
  ]);
}

async function isRunning(handle: { describe(): Promise<{ status: { name: string } }> }): Promise<boolean> {
  try {
    return (await handle.describe()).status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}
