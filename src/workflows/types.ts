/** Data that crosses the workflow boundary: plain, small, JSON. Never image bytes, never secrets. */
import type { GenerationParams } from '../config';
import type { PlannedShot } from '../runs/scan';
import type { UncertainSubmitPolicy } from '../activities';

/** A planned shot (see the run-folder scan) and the take this attempt makes (1 first; regenerations count up). */
export interface ShotSpec extends PlannedShot {
  take: number;
}

/** Capped exponential backoff between status checks; `denseSeconds` is the interval inside the expected window. */
export interface PollSchedule {
  initialSeconds: number;
  factor: number;
  maxSeconds: number;
  denseSeconds?: number;
  /** The interval of an episode's last few running takes, which the whole episode waits on (absent: `initialSeconds`). */
  endgameSeconds?: number;
}

/** Task queues per kind of activity (see src/worker.ts). Absent: everything runs on the workflow's queue. */
export interface ActivityQueues {
  submit: string;
  provider: string;
  media: string;
  files: string;
}

/** How long generation takes (seconds from submission): expected for the service, or learned from the episode's finished shots. */
export interface GenerationEstimate {
  earliestSeconds: number;
  typicalSeconds: number;
  latestSeconds: number;
}

export interface ShotWorkflowInput {
  runDir: string;
  runId: string;
  shot: ShotSpec;
  generation: GenerationParams;
  /** Polling stops this long after the task was submitted. */
  deadlineSeconds: number;
  poll: PollSchedule;
  /** When a submission's outcome is unknown: stop ('fail', the default) or risk paying twice ('resubmit'). */
  uncertainSubmit?: UncertainSubmitPolicy;
  /** The server has our custom search attributes registered: keep `I2vState` up to date. */
  searchAttributes?: boolean;
  /**
   * 'settled': `I2vState` changes only to generating, done and failed (it starts as preparing, set by the episode);
   * absent, as for shots started before it existed: at every phase. Each change is a write to the server's
   * visibility store, on the embedded server the largest share of its storage time while an episode starts its
   * shots (bench/README.md); the short phases show in the current details. An input rather than a patch, because
   * a patch marker makes a visibility write of its own (TemporalChangeVersion).
   */
  stateUpdates?: 'settled';
  /** Expected generation time: the episode's own estimate once it has one, else the configured expectation. */
  estimate?: GenerationEstimate;
  /** Enlarge images under the API's 360 px minimum instead of refusing them. */
  upscaleSmall?: boolean;
  /**
   * The run's pre-flight found the image acceptable to the API as it is: the submission checks it (decoding its
   * pixels) right before sending it, instead of a prepareImage step before it: one activity and one workflow task
   * less per shot, each a few server transactions while an episode is starting its shots. Absent, as for
   * regenerated takes and runs started before it existed: prepareImage first.
   */
  imageAsIs?: boolean;
  queues?: ActivityQueues;
}

export type ShotPhase = 'queued' | 'preparing' | 'submitting' | 'generating' | 'downloading' | 'done' | 'failed';

export interface ShotResult {
  key: string;
  episode: number;
  shot: number;
  take: number;
  status: 'SUCCESS' | 'FAILED';
  /** True when the shot was already finished on disk and this run did nothing for it. */
  skipped?: boolean;
  taskId?: string;
  videoPath?: string;
  thumbnailPath?: string;
  videoSeconds?: number;
  polls: number;
  /** How the provider ended the task (`SUCCEEDED`, `FAILED`, `CANCELED`, `UNKNOWN`), when it did. */
  taskStatus?: string;
  /** Provider-side generation time (submission to end), when known. */
  generationSeconds?: number;
  errorCode?: string;
  errorMessage?: string;
}

export interface EpisodeWorkflowInput {
  runDir: string;
  runId: string;
  episode: number;
  /** Every planned shot of the episode, in shot order, with the take to run next. */
  shots: ShotSpec[];
  /** Results of shots already finished before this run: reported, not redone (unless regenerated). */
  done: ShotResult[];
  generation: GenerationParams;
  deadlineSeconds: number;
  poll: PollSchedule;
  /** What generation is expected to take before the episode has learned it (absent: plain backoff until then). */
  expectedGeneration?: GenerationEstimate;
  /** Shot workflows of this episode running at once. */
  maxInFlight: number;
  /** New takes started automatically after a task fails for a transient reason (default 1). */
  transientRetries?: number;
  uncertainSubmit?: UncertainSubmitPolicy;
  /** The server has our custom search attributes registered (see searchAttributes.ts). */
  searchAttributes?: boolean;
  upscaleSmall?: boolean;
  /** Shot key → the take whose image the pre-flight found acceptable as it is (see ShotWorkflowInput.imageAsIs). */
  imagesAsIs?: Record<string, number>;
  queues?: ActivityQueues;
  /** History events per run before continuing as new (default 5,000, or sooner if the server suggests). */
  maxEventsPerRun?: number;
  /** Running takes the episode tells to check more often at its end (default endgameShotsFor(shots.length)). */
  endgameShots?: number;
  /** State carried over from the previous run of this episode (continue-as-new). */
  carry?: EpisodeCarry;
}

export interface EpisodeCarry {
  /** Shot keys still to run, in order (includes requested regenerations). */
  queue: string[];
  /** Generation times seen so far (seconds), for polling estimates. */
  samples: number[];
  /** New takes already started automatically, per shot key. */
  autoRetries: Record<string, number>;
  /** Runs of this episode so far, including the next one. */
  runs: number;
}

export interface ShotProgress {
  key: string;
  shot: number;
  take: number;
  phase: ShotPhase;
  taskId?: string;
  error?: string;
  errorCode?: string;
}

export interface EpisodeProgress {
  episode: number;
  total: number;
  counts: Record<ShotPhase, number>;
  shots: ShotProgress[];
}

export interface EpisodeResult {
  episode: number;
  total: number;
  succeeded: number;
  failed: number;
  shots: ShotResult[];
}

export interface RegenerateRequest {
  shot: number;
  /** Replaces the shot's prompt for the new take (and later ones). */
  prompt?: string;
}

export interface RegenerateAccepted {
  key: string;
  take: number;
  workflowId: string;
}

/** Sent by a shot workflow to its episode when its phase changes. */
export interface ShotPhaseUpdate {
  key: string;
  take: number;
  phase: ShotPhase;
  taskId?: string;
}

/** From the episode to a shot still generating: check this often from now on (its last few shots hold it up). */
export interface PollHint {
  everySeconds: number;
}
