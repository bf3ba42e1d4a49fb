/**
 * One take of one shot: prepare the image, submit it once, poll with durable timers until the task ends or
 * the deadline passes, then download the video and cut its thumbnails. Deterministic: all I/O is in activities.
 */
import {
  type ActivityOptions,
  ActivityFailure,
  ApplicationFailure,
  getExternalWorkflowHandle,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
  setCurrentDetails,
  upsertSearchAttributes,
  patched,
  CancellationScope,
  condition,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { pollHintSignal, shotPhaseSignal, shotProgressQuery } from './messages';
import { nextPollDelaySeconds } from './polling';
import type { ActivityQueues, ShotPhase, ShotProgress, ShotResult, ShotWorkflowInput } from './types';
import { submissionKey } from './ids';
import { I2V_STATE } from './searchAttributes';

// Every activity heartbeats while it runs (see activities/index.ts), so work cut off by a crashed worker is
// retried after the heartbeat timeout, in seconds.
const HEARTBEAT = '15 seconds';
const PREP: ActivityOptions = {
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: HEARTBEAT,
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['InputError'] },
};
// Submitting costs money: the activity itself guards against double submission (journal); retries here only
// cover failures where the provider certainly did not accept the request (429, 5xx, connection refused).
const SUBMIT: ActivityOptions = {
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: HEARTBEAT,
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 8 },
};
const CHECK: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  heartbeatTimeout: HEARTBEAT,
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 6 },
};
const DOWNLOAD: ActivityOptions = {
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: HEARTBEAT,
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
};
const THUMBNAILS: ActivityOptions = {
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: HEARTBEAT,
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 3 },
};
const RECORD: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  heartbeatTimeout: HEARTBEAT,
  retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: 20 },
};

const activities = proxyActivities<Activities>(PREP);

/**
 * Patch: every patch below at once, in one marker. A new take records only this one: each patch marker also
 * updates the `TemporalChangeVersion` search attribute, a write to the visibility store, and three such writes
 * per shot were much of what an embedded server spent starting an episode's shots. A history recorded without
 * it (older code) replays the separate patches, as recorded. Patches added later go after this one, as before.
 */
const SHOT_PATCHES_1 = 'shot-patches-1';
/** Patch: phase signals to the episode are sent alongside the next step instead of awaited before it. */
const PHASE_SIGNAL_ALONGSIDE = 'phase-signal-alongside';
/** Patch: submitTask records the new task in tasks.json itself. */
const RECORD_IN_SUBMIT = 'record-in-submit';
/**
 * Patch: an image the pre-flight found acceptable as it is goes straight to submitTask (ShotWorkflowInput.imageAsIs).
 * A patch as well as an input, because a worker older than the input ignores it and prepares the image first:
 * without the marker, a newer worker replaying that history would expect the shorter path.
 */
const IMAGE_AS_IS = 'image-as-is';
/** The phases written to `I2vState` when the episode asks for `stateUpdates: 'settled'` (see ShotWorkflowInput). */
const SEARCHABLE_PHASES: ReadonlySet<ShotPhase> = new Set<ShotPhase>(['generating', 'done', 'failed']);

/** Runs an activity with its options, on the queue for its kind of work, with a one-line summary (the event history then reads like a story). */
function act<K extends keyof Activities>(
  queues: ActivityQueues | undefined, name: K, options: ActivityOptions, summary: string, ...args: Parameters<Activities[K]>
): Promise<Awaited<ReturnType<Activities[K]>>> {
  const fn = activities[name] as unknown as CallableWithOptions<Activities[K]>;
  return fn.executeWithOptions({ ...options, taskQueue: queues && queueFor(queues, name), summary }, args);
}

/** Where each kind of work runs (without queue names, as in older runs and tests, on the workflow's own queue). */
function queueFor(queues: ActivityQueues, name: keyof Activities): string {
  switch (name) {
    case 'submitTask':
      return queues.submit;
    case 'checkTask':
      return queues.provider;
    case 'prepareImage':
    case 'makeThumbnails':
      return queues.media;
    default:
      return queues.files;
  }
}

type CallableWithOptions<F extends (...args: never[]) => unknown> = {
  executeWithOptions(options: ActivityOptions, args: Parameters<F>): Promise<Awaited<ReturnType<F>>>;
};

/** A shot that cannot finish; the workflow still completes, with a FAILED result the episode can report. */
class ShotFailed extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** How the provider ended the task, as far as this take knows (undefined: not ended, or never submitted). */
type ProviderEnd = string | undefined;

export async function shotWorkflow(input: ShotWorkflowInput): Promise<ShotResult> {
  const { shot, runDir, queues } = input;
  const progress: ShotProgress = { key: shot.key, shot: shot.shot, take: shot.take, phase: 'queued' };
  let polls = 0;
  let providerEnd: ProviderEnd;
  const hint: HintState = { arrived: false };
  // Decided in the first workflow task, so a history without its marker is one recorded by older code.
  const patchedAll = patched(SHOT_PATCHES_1);
  const has = (patch: string): boolean => patchedAll || patched(patch);
  setHandler(shotProgressQuery, () => progress);
  setHandler(pollHintSignal, ({ everySeconds }) => {
    hint.everySeconds = everySeconds;
    hint.arrived = true;
  });

  const searchable = (phase: ShotPhase): boolean => input.searchAttributes === true && (input.stateUpdates !== 'settled' || SEARCHABLE_PHASES.has(phase));
  const enter = async (phase: ShotPhase, taskId?: string): Promise<void> => {
    progress.phase = phase;
    if (taskId) progress.taskId = taskId;
    setCurrentDetails(`**${phase}**${progress.taskId ? ` · task \`${progress.taskId}\`` : ''}${polls ? ` · ${polls} polls` : ''}`);
    if (searchable(phase)) upsertSearchAttributes([{ key: I2V_STATE, value: phase }]);
    // The episode learns the task id and the download phase; it sees the rest from the result (fewer events).
    if (phase === 'generating' || phase === 'downloading') {
      const signalled = notifyParent({ key: shot.key, take: shot.take, phase, taskId: progress.taskId });
      // Waiting for the signal to be delivered cost a workflow task before the next step (the download, right
      // after the task is seen finished); newer runs send it alongside. Older histories replay the wait.
      if (!has(PHASE_SIGNAL_ALONGSIDE)) await signalled;
    }
  };

  const prepared = async () => {
    await enter('preparing');
    const result = await act(queues, 'prepareImage', PREP, `Prepare the image of ${shot.name}`, { runDir, imagePath: shot.imagePath, upscaleSmall: input.upscaleSmall });
    return { image: { path: result.path, mime: result.mime, sha256: result.fileSha256 } };
  };

  const base = { key: shot.key, episode: shot.episode, shot: shot.shot, take: shot.take };
  try {
    // An image the pre-flight found acceptable as it is goes straight to the submission, which checks it there.
    const asIs = input.imageAsIs === true && has(IMAGE_AS_IS);
    const image = asIs ? { source: { imagePath: shot.imagePath, upscaleSmall: input.upscaleSmall } } : await prepared();

    await enter('submitting');
    // Newer runs have the submission record the task in tasks.json itself: one activity and workflow task less
    // per shot while an episode is submitting. Older histories replay their separate step.
    const recordInSubmit = has(RECORD_IN_SUBMIT);
    const checkedHere = asIs ? '; its image is checked here' : '';
    const submitted = await act(queues, 'submitTask', SUBMIT, `Submit ${shot.name} take ${shot.take} (paid, at most once${checkedHere})`, {
      runDir,
      submissionKey: submissionKey(shot.episode, shot.shot, shot.take),
      ...image,
      prompt: shot.prompt,
      generation: input.generation,
      onUncertain: input.uncertainSubmit,
      ...(recordInSubmit ? { record: { shot, generation: input.generation } } : {}),
    });
    await enter('generating', submitted.taskId);
    if (!recordInSubmit) {
      await act(queues, 'recordShot', RECORD, 'Record the task id in tasks.json', { runDir, shot, generation: input.generation, update: { kind: 'submitted', taskId: submitted.taskId } });
    }

    const remainingMs = input.deadlineSeconds * 1000 - submitted.elapsedSinceSubmitMs;
    const outcome = await pollUntilDone(submitted.taskId, remainingMs, input, hint, () => ++polls);
    providerEnd = outcome.status;
    if (!outcome.succeeded || !outcome.videoUrl) {
      throw new ShotFailed(outcome.code ?? outcome.status, describeTaskEnd(outcome));
    }

    await enter('downloading');
    const video = await downloadWithFreshUrl(input, submitted.taskId, outcome.videoUrl);
    const thumbs = await act(queues, 'makeThumbnails', THUMBNAILS, 'Cut the first-frame thumbnails', { runDir, shot, videoPath: video.videoPath });
    await act(queues, 'recordShot', RECORD, 'Record the finished shot in tasks.json', {
      runDir, shot, generation: input.generation,
      update: { kind: 'succeeded', taskId: submitted.taskId, videoUrl: video.videoUrl, videoPath: video.videoPath, thumbnailPath: thumbs.thumbnailPath, billedSeconds: outcome.videoSeconds },
    });
    await enter('done');
    return {
      ...base, status: 'SUCCESS', taskId: submitted.taskId, videoPath: video.videoPath, thumbnailPath: thumbs.thumbnailPath,
      videoSeconds: video.durationSeconds, generationSeconds: outcome.generationSeconds, polls,
    };
  } catch (err) {
    const failure = toShotFailure(err);
    if (providerEnd === 'SUCCEEDED' || providerEnd === 'SUCCESS') {
      failure.message += ' The video is generated and paid for: run `i2v run` again within 24 h to fetch it at no extra cost.';
    }
    progress.error = failure.message;
    await act(queues, 'recordShot', RECORD, 'Record the failure in tasks.json', { runDir, shot, generation: input.generation, update: { kind: 'failed', taskId: progress.taskId, taskStatus: providerEnd, errorCode: failure.code, errorMessage: failure.message } });
    await enter('failed');
    return { ...base, status: 'FAILED', taskId: progress.taskId, taskStatus: providerEnd, polls, errorCode: failure.code, errorMessage: failure.message };
  }
}

type TaskCheck = Awaited<ReturnType<Activities['checkTask']>>;

/** The episode's latest poll hint; `arrived` until the polling loop has acted on it. */
interface HintState {
  everySeconds?: number;
  arrived: boolean;
  /** Seconds after submission until which the hint holds (set when the polling loop first sees it). */
  untilSeconds?: number;
}

/**
 * A hint holds for this many backoff caps' worth of time from when it arrives (and, with an expected window, at
 * least until the window closes), so a stuck task is not checked often for hours.
 */
const HINT_SPAN_CAPS = 4;
/**
 * Patch: with an expected window, a hint also holds past the window's end, for HINT_SPAN_CAPS from its arrival.
 * Without it, a hint that came just before the window closed lapsed at once, while the episode waited on that
 * very take: the longest task of a run is the likeliest to finish near the end of the window.
 */
const HINT_PAST_WINDOW = 'hint-past-window';

/**
 * Checks the task on a capped backoff until it ends. The deadline is a durable timer of its own, so it holds
 * across worker restarts; it is left to lapse (not cancelled) once the task ends. A poll hint from the episode
 * cuts the current wait short and caps the waits after it.
 */
async function pollUntilDone(taskId: string, remainingMs: number, input: ShotWorkflowInput, hint: HintState, countPoll: () => number): Promise<TaskCheck> {
  if (remainingMs <= 0) {
    // A later run after the deadline: the task may well have finished meanwhile (it stays queryable for 24 h).
    countPoll();
    const state = await checkOnce(input.queues, taskId);
    if (state?.done) return state;
    throw new ShotFailed('DeadlineExceeded', deadlineMessage(taskId, input.deadlineSeconds));
  }
  let deadlinePassed = false;
  const deadline = sleep(remainingMs, { summary: `Deadline: ${Math.round(input.deadlineSeconds / 60)} min after submission` }).then(() => {
    deadlinePassed = true;
  });
  let waited = input.deadlineSeconds - remainingMs / 1000;
  for (let i = 0; ; i++) {
    const planned = nextPollDelaySeconds(i, waited, input.poll, input.estimate);
    // A hint holds for a bounded time, and across the expected window; after that the take backs off as before.
    if (hint.everySeconds !== undefined && hint.untilSeconds === undefined) {
      const span = waited + HINT_SPAN_CAPS * input.poll.maxSeconds;
      const windowEnd = input.estimate?.latestSeconds;
      hint.untilSeconds = windowEnd === undefined ? span : patched(HINT_PAST_WINDOW) ? Math.max(windowEnd, span) : windowEnd;
    }
    const hinted = hint.everySeconds !== undefined && waited < hint.untilSeconds!;
    const delay = hinted ? Math.min(planned, hint.everySeconds!) : planned;
    hint.arrived = false;
    const sleptFrom = new Date().getTime();
    const woken = await waitUnlessHinted(delay, `Wait ${delay} s before status check ${i + 1}`, deadline, hint);
    waited += woken ? (new Date().getTime() - sleptFrom) / 1000 : delay;
    const n = countPoll();
    const state = await checkOnce(input.queues, taskId);
    if (state?.done) return state;
    setCurrentDetails(`**generating** · task \`${taskId}\` · ${n} polls · last status ${state?.status ?? 'unreachable'}`);
    if (deadlinePassed) throw new ShotFailed('DeadlineExceeded', deadlineMessage(taskId, input.deadlineSeconds));
  }
}

/**
 * Waits `seconds` before the next check; true if a poll hint cut the wait short (its timer is then cancelled).
 * Once the deadline has passed, returns at once, leaving the timer to lapse.
 */
async function waitUnlessHinted(seconds: number, summary: string, deadline: Promise<void>, hint: HintState): Promise<boolean> {
  const scope = new CancellationScope();
  const wait = scope.run(() => Promise.race([sleep(seconds * 1000, { summary }).then(() => false), condition(() => hint.arrived).then(() => true)]));
  const woken = await Promise.race([wait, deadline.then(() => undefined)]);
  // Cancelling now drops the pending condition, or the timer if the hint won; never a timer raced by the deadline.
  if (woken !== undefined) scope.cancel();
  return woken === true;
}

/** One status check. A transient failure that outlasts the activity's retries is just a missed poll. */
async function checkOnce(queues: ActivityQueues | undefined, taskId: string): Promise<TaskCheck | undefined> {
  try {
    return await act(queues, 'checkTask', CHECK, `Check task ${taskId}`, { taskId });
  } catch (err) {
    if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.nonRetryable) throw err;
    return undefined;
  }
}

/** Signed video URLs expire; if the download says so, ask the provider for a fresh one once. */
async function downloadWithFreshUrl(input: ShotWorkflowInput, taskId: string, videoUrl: string) {
  const args = { runDir: input.runDir, shot: input.shot };
  try {
    return await act(input.queues, 'downloadVideo', DOWNLOAD, `Download the video of ${input.shot.name}`, { ...args, videoUrl });
  } catch (err) {
    if (failureType(err) !== 'UrlExpired') throw err;
    const fresh = await checkOnce(input.queues, taskId);
    if (!fresh?.succeeded || !fresh.videoUrl || fresh.videoUrl === videoUrl) {
      throw new ShotFailed('UrlExpired', `The video URL of task ${taskId} has expired and the provider gave no fresh one.`);
    }
    return act(input.queues, 'downloadVideo', DOWNLOAD, `Download the video of ${input.shot.name} again (fresh URL)`, { ...args, videoUrl: fresh.videoUrl });
  }
}

async function notifyParent(update: { key: string; take: number; phase: ShotPhase; taskId?: string }): Promise<void> {
  const parent = workflowInfo().parent;
  if (!parent) return;
  try {
    await getExternalWorkflowHandle(parent.workflowId).signal(shotPhaseSignal, update);
  } catch {
    // The episode may have closed (e.g. cancelled); the shot's own result still records everything.
  }
}

function describeTaskEnd(state: TaskCheck): string {
  switch (state.status) {
    case 'FAILED':
      if (state.code === 'DataInspectionFailed') return moderationMessage(state.message);
      return `The provider failed the task: ${state.code ?? 'no code'}${state.message ? ` (${state.message})` : ''}.`;
    case 'UNKNOWN':
      return 'The provider does not know this task (it is over 24 h old, or belongs to another account or region); the next `i2v run` submits a new, paid take.';
    case 'CANCELED':
      return 'The task was cancelled at the provider.';
    default:
      return `The task ended as ${state.status} without a video URL.`;
  }
}

function deadlineMessage(taskId: string, deadlineSeconds: number): string {
  return `No result within ${Math.round(deadlineSeconds / 60)} min of submission; task ${taskId} is recorded, and a later run re-checks it before paying again.`;
}

function failureType(err: unknown): string | undefined {
  if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure) return err.cause.type ?? undefined;
  return undefined;
}

/** Retrying cannot help a moderation block: the user has to change the prompt (or the image). */
function moderationMessage(detail: string | undefined): string {
  return `Content moderation blocked this shot (DataInspectionFailed${detail ? `: ${detail}` : ''}). Edit the prompt or image, then run \`i2v regenerate\` with --prompt.`;
}

function toShotFailure(err: unknown): ShotFailed {
  if (err instanceof ShotFailed) return err;
  if (err instanceof ActivityFailure) {
    const cause = err.cause;
    if (cause instanceof ApplicationFailure && cause.type === 'DataInspectionFailed') return new ShotFailed('DataInspectionFailed', moderationMessage(cause.message));
    if (cause instanceof ApplicationFailure) return new ShotFailed(cause.type ?? 'ActivityFailed', cause.message);
    return new ShotFailed('ActivityFailed', cause?.message ?? err.message);
  }
  // Anything else is a bug in workflow code: fail the workflow task so it is visible and fixable by a deploy.
  throw err;
}
