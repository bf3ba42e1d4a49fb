/**
 * The poll schedules alone, without any infrastructure: the project's own polling maths (src/workflows/polling.ts)
 * and the naive fixed interval, replayed against many draws of the real-service latency distribution, in real
 * seconds. Set beside the measured figures (divided by the time factor), it separates what the schedule costs from
 * what Temporal, the worker and the machine add.
 */
import { DEFAULT_POLL_SCHEDULE, estimateGeneration, nextPollDelaySeconds } from '../src/workflows/polling';
import type { GenerationEstimate, PollSchedule } from '../src/workflows/types';
import { NAIVE_POLL_SECONDS, REAL_PENDING_SECONDS, realGenerationSeconds, seededRandom } from './latency';
import { distribution, round, type Distribution } from './measure';

export interface ScheduleOutcome {
  schedule: string;
  pollsPerTask: number;
  /** Task ready → the status check that sees it, real seconds. */
  detectionLagSeconds: Distribution;
}

/** Episodes simulated, each learning its own estimate from its first finished shots. */
const EPISODES = 40;
const TASKS_PER_EPISODE = 500;
/** An episode keeps this many recent generation times (MAX_SAMPLES in polling.ts). */
const LEARNED_SAMPLES = 50;

export function modelPollSchedules(seed: number): { estimates: GenerationEstimate[]; outcomes: ScheduleOutcome[] } {
  const random = seededRandom(seed ^ 0x5f3759df);
  const draw = () => REAL_PENDING_SECONDS + realGenerationSeconds(random);
  const episodes = Array.from({ length: EPISODES }, () => ({
    estimate: estimateGeneration(Array.from({ length: LEARNED_SAMPLES }, draw))!,
    tasks: Array.from({ length: TASKS_PER_EPISODE }, draw),
  }));
  const naive: PollSchedule = { initialSeconds: NAIVE_POLL_SECONDS, factor: 1, maxSeconds: NAIVE_POLL_SECONDS };
  return {
    estimates: episodes.map((e) => e.estimate),
    outcomes: [
      replay(`naive: every ${NAIVE_POLL_SECONDS} s`, episodes, naive, false),
      replay('ours, no estimate (all shots start before any finishes)', episodes, DEFAULT_POLL_SCHEDULE, false),
      replay(`ours, estimate learned from ${LEARNED_SAMPLES} shots`, episodes, DEFAULT_POLL_SCHEDULE, true),
    ],
  };
}

function replay(name: string, episodes: Array<{ estimate: GenerationEstimate; tasks: number[] }>, schedule: PollSchedule, learned: boolean): ScheduleOutcome {
  let polls = 0;
  const lags: number[] = [];
  for (const { estimate, tasks } of episodes) {
    for (const readyAt of tasks) {
      let waited = 0;
      for (let i = 0; waited < readyAt; i++) {
        waited += nextPollDelaySeconds(i, waited, schedule, learned ? estimate : undefined);
        polls++;
      }
      lags.push(waited - readyAt);
    }
  }
  return { schedule: name, pollsPerTask: round(polls / lags.length, 2), detectionLagSeconds: distribution(lags, 1) };
}
