/**
 * Pure polling maths, shared by the workflows and their tests.
 *
 * Without an estimate of how long generation takes, status checks follow a capped exponential backoff.
 * With one (the configured expectation for the real service at first, then quantiles of the generation times of
 * the episode's own finished shots), a shot skips the checks that cannot succeed: its first check comes one
 * dense interval after the earliest plausible finish, the next ones every dense interval across the plausible
 * window, and past the window it backs off again for the rare task that runs that long.
 */
import type { GenerationEstimate, PollSchedule } from './types';

/**
 * `denseSeconds` 8: across the expected window a finished task is seen within 8 s, with about half the checks of
 * polling every 10 s, because none are spent before the window opens. The check itself adds about half a second
 * (a timer, a workflow task, an activity, the request), which 9 s left no margin for at p95 against polling every
 * 10 s (bench/README.md).
 *
 * `endgameSeconds` 2: once an episode waits on its last few takes only, each second until one of them is seen
 * finished is a second more for the whole episode, and checking a few tasks every 2 s costs little.
 */
export const DEFAULT_POLL_SCHEDULE: PollSchedule = { initialSeconds: 5, factor: 1.5, maxSeconds: 60, denseSeconds: 8, endgameSeconds: 2 };

/** Seconds to wait before status check number `pollIndex` (0-based): initial × factor^i, capped. */
export function pollDelaySeconds(pollIndex: number, schedule: PollSchedule): number {
  const raw = schedule.initialSeconds * Math.pow(schedule.factor, pollIndex);
  return Math.min(schedule.maxSeconds, roundMs(raw));
}

/**
 * Seconds to wait before the next check, given how long ago the task was submitted (`waitedSeconds`, as far as
 * the workflow's own timers know) and, optionally, an estimate of the generation time.
 */
export function nextPollDelaySeconds(pollIndex: number, waitedSeconds: number, schedule: PollSchedule, estimate?: GenerationEstimate): number {
  if (!estimate) return pollDelaySeconds(pollIndex, schedule);
  const dense = schedule.denseSeconds ?? schedule.initialSeconds;
  // Nothing can be ready before the earliest plausible finish, so a check right then is wasted: the first one
  // comes a dense interval later and sees whatever finished in between.
  if (waitedSeconds < estimate.earliestSeconds) return roundMs(estimate.earliestSeconds + dense - waitedSeconds);
  if (waitedSeconds < estimate.latestSeconds) return dense;
  // Past the window: back off from the dense interval towards the cap.
  const overdueSteps = Math.floor((waitedSeconds - estimate.latestSeconds) / Math.max(dense, 1)) + 1;
  return Math.min(schedule.maxSeconds, roundMs(dense * Math.pow(schedule.factor, overdueSteps)));
}

/** Samples needed before an estimate is trusted. */
export const MIN_SAMPLES = 3;
/** Most recent samples kept (generation times drift with the provider's load). */
export const MAX_SAMPLES = 50;

/**
 * Earliest/typical/latest generation times from observed samples (seconds), or undefined with too few.
 * The window runs from just before the fastest few percent to past the slowest sample seen, widened by a
 * margin, so that a task finishing a little outside the observed range is still caught by a dense check, not
 * after a long backoff; a window that opens early costs every task checks, one that closes late only the slow.
 */
export function estimateGeneration(samples: readonly number[]): GenerationEstimate | undefined {
  if (samples.length < MIN_SAMPLES) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  const q = (p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(p * (sorted.length - 1))))] ?? 0;
  const earliest = q(0.02);
  const latest = q(1);
  const spread = latest - earliest;
  return {
    earliestSeconds: roundMs(Math.max(0, earliest - Math.max(1, spread * 0.02))),
    typicalSeconds: roundMs(q(0.5)),
    latestSeconds: roundMs(latest + Math.max(2, spread * 0.15)),
  };
}

/** Appends a sample, keeping the newest MAX_SAMPLES. */
export function addSample(samples: readonly number[], seconds: number): number[] {
  return [...samples, seconds].slice(-MAX_SAMPLES);
}

function roundMs(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}

/**
 * When nothing is queued and at most this many takes are still running, the whole episode waits on them: each
 * is told to check every `poll.endgameSeconds` from then on, so the episode ends as soon as they do. 4 % of the
 * episode's shots, at least 3 and at most 8: a large episode's last tasks often end within seconds of each other,
 * and with 3 the hint went out only once all but 3 were seen finished, too late for most of them (npm run bench);
 * a hinted take checks every 2 s until it ends, so a small episode hints few, where eight would be most of its
 * tail. Eight every 2 s are 4 status checks a second, a fifth of the ~20 a second the query endpoint allows.
 */
export function endgameShotsFor(shots: number): number {
  return Math.min(8, Math.max(3, Math.round(shots * 0.04)));
}
