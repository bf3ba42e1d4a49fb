/**
 * From a scanned run folder and its task record to episode workflow inputs: which shots are already done,
 * and which take each of the others runs next. Pure, so every rule here is unit-tested.
 */
import type { UncertainSubmitPolicy } from '../activities';
import type { GenerationParams } from '../config';
import type { PlannedEpisode, RunPlan } from '../runs/scan';
import type { TaskRecordEntry } from '../runs/taskRecord';
import type { ActivityQueues, EpisodeWorkflowInput, GenerationEstimate, PollSchedule, ShotResult, ShotSpec } from '../workflows/types';

/** Task ends after which only a new submission can help: the provider itself failed, cancelled or lost the task. */
const PROVIDER_ENDED = new Set(['FAILED', 'CANCELED', 'UNKNOWN']);

export interface RunSettings {
  generation: GenerationParams;
  deadlineSeconds: number;
  poll: PollSchedule;
  /** What generation is expected to take until an episode has learned it (absent: backoff until then). */
  expectedGeneration?: GenerationEstimate;
  maxInFlight: number;
  /** Enlarge images under the API's 360 px minimum instead of refusing them. */
  upscaleSmall?: boolean;
  /** When a paid submission's outcome is unknown: stop (default) or risk paying twice. */
  uncertainSubmit?: UncertainSubmitPolicy;
  /** Task queues per kind of work (see src/worker.ts); absent, everything runs on the workflow queue. */
  queues?: ActivityQueues;
  /** Tasks in flight at the provider for the whole run, shared out among its episodes. */
  maxInFlightPerRun?: number;
}

/** Each episode's share of the run-wide cap (at least one shot each), never above the per-episode limit. */
export function episodeShare(settings: RunSettings, episodes: number): number {
  if (!settings.maxInFlightPerRun || episodes === 0) return settings.maxInFlight;
  return Math.min(settings.maxInFlight, Math.max(1, Math.floor(settings.maxInFlightPerRun / episodes)));
}

/** Take to run next for a shot, given its record (if any). `undefined` means it is done. */
export function nextTake(record: TaskRecordEntry | undefined, outputsPresent: boolean): { take: number; done: boolean } {
  if (!record) return { take: 1, done: false };
  if (record.status === 'SUCCESS' && outputsPresent) return { take: record.take, done: true };
  if (record.status === 'FAILED' && record.task_id && PROVIDER_ENDED.has(record.task_status ?? '')) {
    return { take: record.take + 1, done: false };
  }
  // Not submitted yet, interrupted, past its deadline, or failed on our side after the provider finished (a
  // download, the disk, a key problem): the same take resumes, re-checking its task from the journal instead of
  // paying again. Its video stays downloadable for 24 h.
  return { take: record.take, done: false };
}

export function episodeInput(
  plan: Pick<RunPlan, 'runDir' | 'runId'>,
  episode: PlannedEpisode,
  records: Record<string, TaskRecordEntry>,
  outputsPresent: (shot: ShotSpec) => boolean,
  settings: RunSettings,
  /** Keys of the shots whose image the pre-flight found acceptable as it is (PreflightResult.asIs). */
  asIs: ReadonlySet<string> = new Set(),
): EpisodeWorkflowInput {
  const shots: ShotSpec[] = [];
  const done: ShotResult[] = [];
  const imagesAsIs: Record<string, number> = {};
  for (const planned of episode.shots) {
    const record = records[planned.key];
    const base = { episode: planned.episode, shot: planned.shot, key: planned.key, name: planned.name, imagePath: planned.imagePath, prompt: planned.prompt };
    const probe: ShotSpec = { ...base, take: record?.take ?? 1 };
    const next = nextTake(record, record ? outputsPresent(probe) : false);
    const spec: ShotSpec = { ...base, take: next.take };
    shots.push(spec);
    if (!next.done && asIs.has(spec.key)) imagesAsIs[spec.key] = spec.take;
    if (next.done && record) {
      done.push({
        key: spec.key, episode: spec.episode, shot: spec.shot, take: spec.take, status: 'SUCCESS', skipped: true,
        taskId: record.task_id ?? undefined, videoPath: record.video_path ?? undefined, thumbnailPath: record.thumbnail_path ?? undefined, polls: 0,
      });
    }
  }
  return {
    runDir: plan.runDir,
    runId: plan.runId,
    episode: episode.episode,
    shots,
    done,
    generation: settings.generation,
    deadlineSeconds: settings.deadlineSeconds,
    poll: settings.poll,
    ...(settings.expectedGeneration ? { expectedGeneration: settings.expectedGeneration } : {}),
    maxInFlight: settings.maxInFlight,
    upscaleSmall: settings.upscaleSmall,
    ...(Object.keys(imagesAsIs).length > 0 ? { imagesAsIs } : {}),
    uncertainSubmit: settings.uncertainSubmit,
    queues: settings.queues,
  };
}
