/**
 * One episode: a child workflow per shot take, at most `maxInFlight` at once, in shot order. Answers the
 * `progress` query and accepts `regenerate` updates while it runs. Deterministic: no I/O here.
 */
import {
  type ActivityOptions, type ChildWorkflowHandle, ActivityFailure, ChildWorkflowFailure, allHandlersFinished, proxyActivities, condition, continueAsNew, patched, setCurrentDetails, setHandler,
  startChild, upsertSearchAttributes, workflowInfo,
} from '@temporalio/workflow';
import { episodeProgressQuery, pollHintSignal, regenerateUpdate, shotPhaseSignal } from './messages';
import type { Activities } from '../activities';
import { shotWorkflowId } from './ids';
import { addSample, endgameShotsFor, estimateGeneration } from './polling';
import { shotWorkflow } from './shot';
import { I2V_STATE, shotSearchAttributes } from './searchAttributes';
import type {
  ActivityQueues, EpisodeProgress, EpisodeResult, EpisodeWorkflowInput, RegenerateRequest, ShotPhase, ShotProgress, ShotResult, ShotSpec,
} from './types';

const DEFAULT_TRANSIENT_RETRIES = 1;

const PHASES: ShotPhase[] = ['queued', 'preparing', 'submitting', 'generating', 'downloading', 'done', 'failed'];

interface ShotState {
  spec: ShotSpec;
  progress: ShotProgress;
  result?: ShotResult;
  running: boolean;
  /** A regenerate request arrived while a take was running: start the next take after it. */
  rerun: boolean;
  /** New takes started automatically after transient task failures. */
  autoRetries: number;
  /** The running take's workflow, once started. */
  child?: ChildWorkflowHandle<typeof shotWorkflow>;
  /** The running take has been told to check more often (see endgameShotsFor). */
  hinted?: boolean;
}

/** Before patch ENDGAME_BY_SIZE. */
const ENDGAME_SHOTS_BEFORE = 3;
/** Patch: the episode sends poll hints to its last running takes. */
const ENDGAME_HINTS = 'endgame-poll-hints';
/** Patch: poll hints go to the last endgameShotsFor(shots) running takes (or input.endgameShots), not 3. */
const ENDGAME_BY_SIZE = 'endgame-shots-by-size';

export async function episodeWorkflow(input: EpisodeWorkflowInput): Promise<EpisodeResult> {
  const doneByKey = new Map(input.done.map((r) => [r.key, r]));
  const queue: string[] = input.carry?.queue ?? input.shots.filter((s) => !doneByKey.has(s.key)).map((s) => s.key);
  const shots = new Map<string, ShotState>();
  for (const spec of input.shots) {
    const result = doneByKey.get(spec.key);
    const phase: ShotPhase = queue.includes(spec.key) || !result ? 'queued' : result.status === 'SUCCESS' ? 'done' : 'failed';
    const progress: ShotProgress = { key: spec.key, shot: spec.shot, take: spec.take, phase, taskId: result?.taskId, error: result?.errorMessage, errorCode: result?.errorCode };
    shots.set(spec.key, { spec, result, running: false, rerun: false, autoRetries: input.carry?.autoRetries[spec.key] ?? 0, progress });
  }
  let samples: number[] = input.carry?.samples ?? [];
  let inFlight = 0;

  setHandler(episodeProgressQuery, () => progressOf(input.episode, shots));
  setCurrentDetails(detailsOf(progressOf(input.episode, shots)));
  setHandler(shotPhaseSignal, (update) => {
    const state = shots.get(update.key);
    if (!state || state.spec.take !== update.take) return; // a late signal from an earlier take
    state.progress.phase = update.phase;
    if (update.taskId) state.progress.taskId = update.taskId;
  });
  setHandler(
    regenerateUpdate,
    (request: RegenerateRequest) => {
      const state = stateOfShot(shots, request.shot);
      const prompt = request.prompt ?? state.spec.prompt;
      const waiting = !state.running && queue.includes(state.spec.key);
      // A take that has not started yet just gets the new prompt; otherwise a new take follows.
      const spec = waiting ? { ...state.spec, prompt } : { ...state.spec, take: state.spec.take + 1, prompt };
      state.spec = spec;
      state.progress = { key: spec.key, shot: spec.shot, take: spec.take, phase: 'queued' };
      if (state.running) state.rerun = true;
      else if (!waiting) queue.push(spec.key);
      return { key: spec.key, take: spec.take, workflowId: shotWorkflowId(input.runId, spec.episode, spec.shot, spec.take) };
    },
    {
      validator: (request: RegenerateRequest) => {
        stateOfShot(shots, request.shot);
        if (request.prompt !== undefined && !request.prompt.trim()) throw new Error('The new prompt is empty.');
      },
    },
  );

  const runTake = async (state: ShotState): Promise<void> => {
    const spec = state.spec;
    state.running = true;
    inFlight++;
    try {
      state.hinted = false;
      const child = await startChild(shotWorkflow, {
        workflowId: shotWorkflowId(input.runId, spec.episode, spec.shot, spec.take),
        args: [{
          runDir: input.runDir, runId: input.runId, shot: spec, generation: input.generation, deadlineSeconds: input.deadlineSeconds,
          poll: input.poll, uncertainSubmit: input.uncertainSubmit, searchAttributes: input.searchAttributes, estimate: estimateGeneration(samples) ?? input.expectedGeneration,
          upscaleSmall: input.upscaleSmall, queues: input.queues, stateUpdates: 'settled',
          // Only the take the pre-flight checked; a new take (regenerated, or retried after a failed task) is
          // prepared first, since its image may have changed since.
          ...(input.imagesAsIs?.[spec.key] === spec.take ? { imageAsIs: true } : {}),
        }],
        staticSummary: `${spec.name} take ${spec.take}: ${summaryText(spec.prompt, 60)}`,
        typedSearchAttributes: input.searchAttributes ? shotSearchAttributes(input.runId, spec.episode, spec.shot) : undefined,
      });
      state.child = child;
      const result = await child.result();
      if (result.generationSeconds !== undefined) samples = addSample(samples, result.generationSeconds);
      if (shouldRetryAsNewTake(result, state, input)) {
        state.autoRetries++;
        state.spec = { ...spec, take: spec.take + 1 };
        state.progress = { key: spec.key, shot: spec.shot, take: spec.take + 1, phase: 'queued' };
        state.rerun = true;
        return;
      }
      settle(state, spec, result);
    } catch (err) {
      // The child itself failed, was terminated or timed out (its own failures come back as FAILED results).
      const message = err instanceof ChildWorkflowFailure ? `${err.message}: ${err.cause?.message ?? 'no cause'}` : String(err);
      settle(state, spec, { key: spec.key, episode: spec.episode, shot: spec.shot, take: spec.take, status: 'FAILED', polls: 0, errorCode: 'ShotWorkflowFailed', errorMessage: message, taskId: state.progress.taskId });
    } finally {
      state.running = false;
      state.child = undefined;
      inFlight--;
      if (state.rerun) {
        state.rerun = false;
        queue.push(spec.key);
      }
      setCurrentDetails(detailsOf(progressOf(input.episode, shots)));
    }
  };

  // Decided in the run's first workflow task, so a history without the marker is one recorded by older code.
  const endgameShots = patched(ENDGAME_BY_SIZE) ? input.endgameShots ?? endgameShotsFor(input.shots.length) : ENDGAME_SHOTS_BEFORE;
  void hintLastShots(shots, queue, endgameShots, input.poll.endgameSeconds ?? input.poll.initialSeconds);

  const canGoOn = (): boolean => (queue.length > 0 && inFlight < input.maxInFlight) || inFlight === 0;
  for (;;) {
    // Only when there is something to wait for: the SDK records a stack trace for every promise a workflow makes,
    // and a condition makes three, which for an episode starting its shots was three per shot in one workflow task.
    if (!canGoOn()) await condition(canGoOn);
    if (queue.length > 0 && historyIsLong(input)) {
      // Keep each run's history bounded (1,000-shot episodes): let running takes finish, then carry on in a
      // fresh run with the same workflow id, carrying every result, the queue and what was learned.
      await condition(() => inFlight === 0);
      await condition(allHandlersFinished);
      return continueAsNew<typeof episodeWorkflow>(nextRunInput(input, shots, queue, samples));
    }
    const key = queue.shift();
    if (key === undefined) {
      // Nothing queued and nothing running. Let a regenerate update that arrived at the very end be answered, and its take run, before closing.
      await condition(allHandlersFinished);
      if (queue.length === 0 && inFlight === 0) break;
      continue;
    }
    const state = shots.get(key);
    if (state) void runTake(state);
  }

  const results = [...shots.values()].map((s) => s.result).filter((r): r is ShotResult => r !== undefined).sort((a, b) => a.shot - b.shot);
  const failed = results.filter((r) => r.status === 'FAILED').length;
  await writeReports(input.runDir, input.queues);
  if (input.searchAttributes) upsertSearchAttributes([{ key: I2V_STATE, value: failed ? 'failed' : 'done' }]);
  return {
    episode: input.episode,
    total: results.length,
    succeeded: results.filter((r) => r.status === 'SUCCESS').length,
    failed,
    shots: results,
  };
}

/** Runs for the life of the episode run: tells each of its last few running takes, once, to check more often. */
async function hintLastShots(shots: Map<string, ShotState>, queue: string[], endgameShots: number, everySeconds: number): Promise<void> {
  const toHint = (): ShotState[] => {
    if (queue.length > 0) return [];
    const running = [...shots.values()].filter((s) => s.running);
    if (running.length > endgameShots) return [];
    return running.filter((s) => s.child && !s.hinted && s.progress.phase === 'generating');
  };
  for (;;) {
    await condition(() => toHint().length > 0);
    if (!patched(ENDGAME_HINTS)) return; // an episode started before hints existed carries on without them
    for (const state of toHint()) {
      state.hinted = true;
      state.child!.signal(pollHintSignal, { everySeconds }).catch(() => undefined); // it may just have finished
    }
  }
}

const REPORTS: ActivityOptions = { startToCloseTimeout: '10 minutes', heartbeatTimeout: '15 seconds', retry: { maximumAttempts: 3 } };
const reports = proxyActivities<Activities>(REPORTS);

/** report.xlsx and index.html, refreshed when an episode ends. A report that cannot be written fails nothing. */
async function writeReports(runDir: string, queues: ActivityQueues | undefined): Promise<void> {
  try {
    await reports.writeReports.executeWithOptions({ ...REPORTS, taskQueue: queues?.files, summary: 'Write report.xlsx and index.html' }, [{ runDir }]);
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    setCurrentDetails(`Reports not written: ${err.cause?.message ?? err.message} (run \`i2v report\`)`);
  }
}

/** Events per run after which the episode continues as new, unless the server suggests it sooner. */
const MAX_EVENTS_PER_RUN = 5000;

function historyIsLong(input: EpisodeWorkflowInput): boolean {
  const info = workflowInfo();
  return info.continueAsNewSuggested || info.historyLength >= (input.maxEventsPerRun ?? MAX_EVENTS_PER_RUN);
}

function nextRunInput(input: EpisodeWorkflowInput, shots: Map<string, ShotState>, queue: string[], samples: number[]): EpisodeWorkflowInput {
  const states = [...shots.values()];
  return {
    ...input,
    shots: states.map((s) => s.spec),
    done: states.map((s) => s.result).filter((r): r is ShotResult => r !== undefined),
    carry: {
      queue: [...queue],
      samples,
      autoRetries: Object.fromEntries(states.filter((s) => s.autoRetries > 0).map((s) => [s.spec.key, s.autoRetries])),
      runs: (input.carry?.runs ?? 1) + 1,
    },
  };
}

/**
 * Task failure codes worth a new take: the provider's own faults and throttling, not quota or content problems.
 * Kept here, frozen, rather than shared with the HTTP client: changing it changes what running episodes do.
 */
function isTransientTaskFailure(code: string): boolean {
  const family = (prefix: string) => code === prefix || code.startsWith(`${prefix}.`);
  return family('InternalError') || (family('Throttling') && !family('Throttling.AllocationQuota'));
}

/** A task the provider failed for a transient reason (e.g. InternalError) gets a new take, a limited number of times. */
function shouldRetryAsNewTake(result: ShotResult, state: ShotState, input: EpisodeWorkflowInput): boolean {
  if (result.status !== 'FAILED' || !result.taskId || !result.errorCode) return false;
  if (state.spec.take !== result.take || state.rerun) return false; // the user already asked for a new take
  return isTransientTaskFailure(result.errorCode) && state.autoRetries < (input.transientRetries ?? DEFAULT_TRANSIENT_RETRIES);
}

function settle(state: ShotState, spec: ShotSpec, result: ShotResult): void {
  if (state.spec.take !== spec.take) return; // a newer take was requested meanwhile; it will report instead
  state.result = result;
  state.progress.phase = result.status === 'SUCCESS' ? 'done' : 'failed';
  if (result.errorMessage) state.progress.error = result.errorMessage;
  if (result.errorCode) state.progress.errorCode = result.errorCode;
}

/** The start of a prompt for the Web UI, which renders summaries as Markdown: one line, whole characters. */
function summaryText(text: string, maxChars: number): string {
  const chars = Array.from(text.replace(/\s+/g, ' ').trim());
  const cut = chars.length > maxChars ? `${chars.slice(0, maxChars).join('')}…` : chars.join('');
  return cut.replace(/[\\`*_[\]<>#|]/g, (c) => `\\${c}`);
}

function stateOfShot(shots: Map<string, ShotState>, shot: number): ShotState {
  for (const state of shots.values()) if (state.spec.shot === shot) return state;
  throw new Error(`Shot ${shot} is not part of this episode.`);
}

function progressOf(episode: number, shots: Map<string, ShotState>): EpisodeProgress {
  const counts = Object.fromEntries(PHASES.map((p) => [p, 0])) as Record<ShotPhase, number>;
  const list = [...shots.values()].map((s) => ({ ...s.progress })).sort((a, b) => a.shot - b.shot);
  for (const p of list) counts[p.phase]++;
  return { episode, total: list.length, counts, shots: list };
}

function detailsOf(p: EpisodeProgress): string {
  return `${p.counts.done}/${p.total} done · ${p.counts.failed} failed · ${p.total - p.counts.done - p.counts.failed} in progress`;
}
