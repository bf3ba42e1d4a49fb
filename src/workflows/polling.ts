/** Pure polling maths, shared by the workflow and its tests. */
import type { PollSchedule } from './types';

export const DEFAULT_POLL_SCHEDULE: PollSchedule = { initialSeconds: 5, factor: 1.5, maxSeconds: 60 };

/** Seconds to wait before status check number `pollIndex` (0-based): initial × factor^i, capped. */
export function pollDelaySeconds(pollIndex: number, schedule: PollSchedule): number {
  const raw = schedule.initialSeconds * Math.pow(schedule.factor, pollIndex);
  return Math.min(schedule.maxSeconds, Math.round(raw * 1000) / 1000);
}
