/** Which shots a run redoes, and with which take: the rules that decide whether the user pays again. */
import { describe, expect, it } from 'vitest';
import { episodeInput, nextTake, type RunSettings } from '../src/cli/plan';
import { DEFAULT_GENERATION } from '../src/config';
import type { PlannedEpisode } from '../src/runs/scan';
import type { TaskRecordEntry } from '../src/runs/taskRecord';
import { resolveTemporalTool } from '../src/temporal/binaries';
import { DEFAULT_POLL_SCHEDULE, estimateGeneration, nextPollDelaySeconds, pollDelaySeconds } from '../src/workflows/polling';

const entry = (over: Partial<TaskRecordEntry>): TaskRecordEntry => ({
  task_id: 't-1', status: 'SUCCESS', image_path: 'x.png', prompt: 'p', video_url: null, video_path: null, thumbnail_path: null,
  submit_time: null, complete_time: null, error_message: null, episode: 1, shot: 1, take: 1, updated_at: '', ...over,
} as TaskRecordEntry);

describe('nextTake', () => {
  it('starts a never-seen shot at take 1', () => {
    expect(nextTake(undefined, false)).toEqual({ take: 1, done: false });
  });
  it('skips a shot whose video and thumbnail are on disk', () => {
    expect(nextTake(entry({ status: 'SUCCESS', take: 2 }), true)).toEqual({ take: 2, done: true });
  });
  it('redoes the same take (re-using its task) when a recorded success lost its files', () => {
    expect(nextTake(entry({ status: 'SUCCESS', take: 2 }), false)).toEqual({ take: 2, done: false });
  });
  it('starts a new take after a task the provider failed, cancelled or lost', () => {
    for (const task_status of ['FAILED', 'CANCELED', 'UNKNOWN']) {
      expect(nextTake(entry({ status: 'FAILED', task_status, error_code: 'InternalError', take: 1 }), false)).toEqual({ take: 2, done: false });
    }
  });
  it('re-checks the same task first when the last run gave up at the deadline', () => {
    expect(nextTake(entry({ status: 'FAILED', task_status: null, error_code: 'DeadlineExceeded', take: 3 }), false)).toEqual({ take: 3, done: false });
  });
  it('does not pay again when the provider finished the task but the download or disk failed on our side', () => {
    for (const error_code of ['Download.network', 'UrlExpired', 'InvalidApiKey', 'Error']) {
      expect(nextTake(entry({ status: 'FAILED', task_status: 'SUCCEEDED', error_code, take: 1 }), false)).toEqual({ take: 1, done: false });
    }
  });
  it('resumes the same take when it was interrupted mid-generation', () => {
    expect(nextTake(entry({ status: 'RUNNING', take: 1 }), false)).toEqual({ take: 1, done: false });
  });
  it('retries the same take when it failed before anything was submitted', () => {
    expect(nextTake(entry({ status: 'FAILED', task_id: null, error_code: 'InputError' }), false)).toEqual({ take: 1, done: false });
  });
});

describe('poll schedule', () => {
  it('grows from 5 s by 1.5× and is capped at 60 s', () => {
    expect([0, 1, 2, 3, 7, 20].map((i) => pollDelaySeconds(i, DEFAULT_POLL_SCHEDULE))).toEqual([5, 7.5, 11.25, 16.875, 60, 60]);
  });
});

describe('learned polling', () => {
  const estimate = { earliestSeconds: 90, typicalSeconds: 135, latestSeconds: 200 };
  /** Simulates the checks for a task ready after `readyAt` s: how many, and how late the success was seen. */
  function simulate(readyAt: number, est = estimate) {
    let waited = 0;
    for (let i = 0; ; i++) {
      waited += nextPollDelaySeconds(i, waited, DEFAULT_POLL_SCHEDULE, est);
      if (waited >= readyAt) return { polls: i + 1, lag: waited - readyAt };
    }
  }

  it('uses the plain backoff until it has an estimate', () => {
    expect(nextPollDelaySeconds(3, 29, DEFAULT_POLL_SCHEDULE)).toBe(pollDelaySeconds(3, DEFAULT_POLL_SCHEDULE));
    expect(estimateGeneration([100, 120])).toBeUndefined();
  });

  it('checks first a dense interval after the earliest plausible finish, then every dense interval, then backs off', () => {
    expect(nextPollDelaySeconds(0, 0, DEFAULT_POLL_SCHEDULE, estimate)).toBe(98);
    expect(nextPollDelaySeconds(1, 98, DEFAULT_POLL_SCHEDULE, estimate)).toBe(8);
    expect(nextPollDelaySeconds(5, 190, DEFAULT_POLL_SCHEDULE, estimate)).toBe(8);
    expect(nextPollDelaySeconds(6, 200, DEFAULT_POLL_SCHEDULE, estimate)).toBe(12);
    expect(nextPollDelaySeconds(9, 260, DEFAULT_POLL_SCHEDULE, estimate)).toBe(60);
    // A shot resumed part-way (a later run) keeps to the same plan.
    expect(nextPollDelaySeconds(0, 50, DEFAULT_POLL_SCHEDULE, estimate)).toBe(48);
  });

  it('sees a task within the dense interval anywhere in the window, with about half the checks of polling every 10 s', () => {
    const readyTimes = Array.from({ length: 110 }, (_, i) => 90 + i);
    let polls = 0;
    let naivePolls = 0;
    for (const readyAt of readyTimes) {
      const seen = simulate(readyAt);
      expect(seen.lag).toBeLessThanOrEqual(DEFAULT_POLL_SCHEDULE.denseSeconds!);
      polls += seen.polls;
      naivePolls += Math.ceil(readyAt / 10);
    }
    expect(polls / naivePolls).toBeLessThan(0.5);
  });

  it('estimates a window from the spread of finished shots, widened by a margin', () => {
    const est = estimateGeneration([100, 110, 120, 130, 140, 150, 160, 170, 180, 300])!;
    expect(est.typicalSeconds).toBe(150);
    expect(est.earliestSeconds).toBeLessThan(100);
    expect(est.latestSeconds).toBeGreaterThan(300);
  });
});

describe('Temporal binaries', () => {
  it('prefers the env override, then the pinned project copy', () => {
    expect(resolveTemporalTool('temporal', { TEMPORAL_CLI_PATH: '/opt/temporal' })).toEqual({ executable: { type: 'existing-path', path: '/opt/temporal' }, source: 'env' });
    const pinned = resolveTemporalTool('temporal-test-server', { PATH: '' });
    expect(pinned.source).toBe('project');
    expect(pinned.executable).toMatchObject({ type: 'existing-path', path: expect.stringMatching(/\.tools\/temporal-test-server\/[\d.]+\/temporal-test-server$/) });
  });
});

describe('episodeInput', () => {
  const settings: RunSettings = { generation: DEFAULT_GENERATION, deadlineSeconds: 7200, poll: DEFAULT_POLL_SCHEDULE, maxInFlight: 2 };
  const shot = (n: number) => ({ episode: 1, shot: n, key: `Episode-01-00${n}`, name: `Episode-01-Shot-00${n}`, imagePath: `/run/05_generated_images/Episode-01/Episode-01-Shot-00${n}.png`, prompt: 'p' });
  const episode = { episode: 1, name: 'Episode-01', shots: [shot(1), shot(2), shot(3)], problems: [] } as unknown as PlannedEpisode;

  it('marks the images the pre-flight found acceptable as they are, for the take about to run, and no finished shot', () => {
    const records = {
      'Episode-01-002': entry({ status: 'FAILED', task_id: 't-2', task_status: 'FAILED', take: 1 }),
      'Episode-01-003': entry({ status: 'SUCCESS', take: 1 }),
    };
    const input = episodeInput({ runDir: '/run', runId: 'r' }, episode, records, () => true, settings, new Set(['Episode-01-001', 'Episode-01-002', 'Episode-01-003']));
    // Shot 2 runs take 2 (its provider task failed); shot 3 is done and needs nothing.
    expect(input.imagesAsIs).toEqual({ 'Episode-01-001': 1, 'Episode-01-002': 2 });
    expect(episodeInput({ runDir: '/run', runId: 'r' }, episode, {}, () => false, settings).imagesAsIs).toBeUndefined();
  });
});
