/**
 * Generation latency and time scaling. Real-service intervals (seconds) are multiplied by one time factor, so a
 * run that would take many minutes at the provider takes a fraction of that here, with every interval of both
 * pipelines (poll schedules, PENDING time, generation time, deadline) shrunk alike.
 */
import type { GenerationEstimate, PollSchedule } from '../src/workflows/types';

/** `real`: the service's distribution; `near-zero`: ready once rendered; `fixed`: every task the same (PENDING 3 s + 60 s). */
export type LatencyModel = 'real' | 'near-zero' | 'fixed';


/** Real-service seconds a task stays PENDING before it runs (reference §4.3: "a few seconds"). */
export const REAL_PENDING_SECONDS = 3;

/**
 * Real-service generation time (RUNNING), in seconds: 90 % uniform in 90–180 s, 10 % uniform in 180–300 s
 * (reference §6: "typically 1–5 min"; flash at 720P usually finishes in 1.5–3 min).
 */
export function realGenerationSeconds(random: () => number): number {
  return random() < 0.9 ? 90 + 90 * random() : 180 + 120 * random();
}

/** Long enough that even a 9 MB image's video is rendered by then, so every task is ready at the same age. */
export const FIXED_RUNNING_SECONDS = 60;

export interface ScaledTimings {
  pendingMs: number;
  /** Draws one task's RUNNING time, already scaled. */
  runningMs: () => number;
}

export function scaledTimings(model: LatencyModel, timeFactor: number, random: () => number): ScaledTimings {
  if (model === 'near-zero') return { pendingMs: 0, runningMs: () => 0 };
  if (model === 'fixed') return { pendingMs: Math.round(REAL_PENDING_SECONDS * 1000 * timeFactor), runningMs: () => Math.round(FIXED_RUNNING_SECONDS * 1000 * timeFactor) };
  return {
    pendingMs: Math.round(REAL_PENDING_SECONDS * 1000 * timeFactor),
    runningMs: () => Math.round(realGenerationSeconds(random) * 1000 * timeFactor),
  };
}

/** A poll schedule with every interval scaled (the growth factor is a ratio and stays). */
export function scalePollSchedule(schedule: PollSchedule, timeFactor: number): PollSchedule {
  const s = (seconds: number) => Math.round(seconds * timeFactor * 1000) / 1000;
  return {
    initialSeconds: s(schedule.initialSeconds),
    factor: schedule.factor,
    maxSeconds: s(schedule.maxSeconds),
    ...(schedule.denseSeconds !== undefined ? { denseSeconds: s(schedule.denseSeconds) } : {}),
    ...(schedule.endgameSeconds !== undefined ? { endgameSeconds: s(schedule.endgameSeconds) } : {}),
  };
}

/** An expected generation time with every figure scaled. */
export function scaleEstimate(estimate: GenerationEstimate, timeFactor: number): GenerationEstimate {
  const s = (seconds: number) => Math.round(seconds * timeFactor * 1000) / 1000;
  return { earliestSeconds: s(estimate.earliestSeconds), typicalSeconds: s(estimate.typicalSeconds), latestSeconds: s(estimate.latestSeconds) };
}

/** The naive baseline's fixed interval between status checks, at the real service. */
export const NAIVE_POLL_SECONDS = 10;
