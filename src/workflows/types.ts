/** Data that crosses the workflow boundary: plain, small, JSON. Never image bytes, never secrets. */
import type { GenerationParams } from '../config';
import type { PlannedShot } from '../runs/scan';
import type { UncertainSubmitPolicy } from '../activities';

/** A planned shot (see the run-folder scan) and the take this attempt makes (1 first; regenerations count up). */
export interface ShotSpec extends PlannedShot {
  take: number;
}

/** Capped exponential backoff between status checks. */
export interface PollSchedule {
  initialSeconds: number;
  factor: number;
  maxSeconds: number;
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
  /** Shot workflows of this episode running at once. */
  maxInFlight: number;
  /** New takes started automatically after a task fails for a transient reason (default 1). */
  transientRetries?: number;
  uncertainSubmit?: UncertainSubmitPolicy;
  /** The server has our custom search attributes registered (see searchAttributes.ts). */
  searchAttributes?: boolean;
}

export interface ShotProgress {
  key: string;
  shot: number;
  take: number;
  phase: ShotPhase;
  taskId?: string;
  error?: string;
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
