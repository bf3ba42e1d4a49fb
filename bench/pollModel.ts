/**
 * The poll schedules alone, without any infrastructure: the project's own polling maths (src/workflows/polling.ts)
 * and the naive fixed interval, replayed against many draws of the real-service latency distribution, in real
 * seconds. Set beside the measured figures (divided by the time factor), it separates what the schedule costs from
 * what Temporal, the worker and the machine add.
 */
import { DEFAULTS } from '../src/config';
import { DEFAULT_POLL_SCHEDULE, estimateGeneration, nextPollDelaySeconds } from '../src/workflows/polling';
import type { GenerationEstimate, PollSchedule } from '../src/workflows/types';
import { seededRandom } from '../src/emulator/random';
import { NAIVE_POLL_SECONDS, REAL_PENDING_SECONDS, realGenerationSeconds } from './latency';
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

export function modelPollSchedules(seed: number, schedule: PollSchedule = DEFAULT_POLL_SCHEDULE): { estimates: GenerationEstimate[]; outcomes: ScheduleOutcome[] } {
  const random = seededRandom(seed ^ 0x5f3759df);
  const draw = () => REAL_PENDING_SECONDS + realGenerationSeconds(random);
  const episodes = Array.from({ length: EPISODES }, () => ({
    estimate: estimateGeneration(Array.from({ length: LEARNED_SAMPLES }, draw))!,
    tasks: Array.from({ length: TASKS_PER_EPISODE }, draw),
  }));
  const expected = DEFAULTS.expectedGeneration;
  const naive: PollSchedule = { initialSeconds: NAIVE_POLL_SECONDS, factor: 1, maxSeconds: NAIVE_POLL_SECONDS };
  return {
    estimates: episodes.map((e) => e.estimate),
    outcomes: [
      replay(`naive: every ${NAIVE_POLL_SECONDS} s`, episodes, naive, () => undefined),
      replay('ours, no estimate (--expected-seconds none)', episodes, schedule, () => undefined),
      replay(`ours, expected ${expected.earliestSeconds}-${expected.latestSeconds} s (before any shot finishes)`, episodes, schedule, () => expected),
      replay(`ours, estimate learned from ${LEARNED_SAMPLES} shots`, episodes, schedule, (e) => e.estimate),
    ],
  };
}

type Episode = { estimate: GenerationEstimate; tasks: number[] };

function replay(name: string, episodes: Episode[], schedule: PollSchedule, estimateOf: (e: Episode) => GenerationEstimate | undefined): ScheduleOutcome {
  let polls = 0;
  const lags: number[] = [];
  for (const episode of episodes) {
    const estimate = estimateOf(episode);
    for (const readyAt of episode.tasks) {
      let waited = 0;
      for (let i = 0; waited < readyAt; i++) {
        waited += nextPollDelaySeconds(i, waited, schedule, estimate);
        polls++;
      }
      lags.push(waited - readyAt);
    }
  }
  return { schedule: name, pollsPerTask: round(polls / lags.length, 2), detectionLagSeconds: distribution(lags, 1) };
}
