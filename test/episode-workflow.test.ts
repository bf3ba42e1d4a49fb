/**
 * The episode workflow on the time-skipping server with real activities and the emulator: automatic new
 * takes after transient task failures, none after moderation blocks, and the progress query.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { temporal } from '@temporalio/proto';
import { DEFAULT_GENERATION } from '../src/config';
import { scanRun } from '../src/runs/scan';
import { readTaskRecord } from '../src/runs/taskRecord';
import { DEFAULT_POLL_SCHEDULE, endgameShotsFor } from '../src/workflows/polling';
import { episodeProgressQuery, regenerateUpdate } from '../src/workflows/messages';
import { shotWorkflowId } from '../src/workflows/ids';
import { activitiesScheduled, maybeRecordHistory } from './helpers/histories';
import type { EpisodeWorkflowInput } from '../src/workflows/types';
import type { episodeWorkflow } from '../src/workflows/episode';
import { makeRunFolder, type ShotFixture } from './helpers/runFolder';
import { useTimeSkippingPipeline } from './helpers/temporal';

const taskQueue = 'episode-tests';
const pipeline = useTimeSkippingPipeline(taskQueue, { pendingMs: 0, runningMs: 100, videoSeconds: 1 });

async function episodeInput(shots: ShotFixture[], over: Partial<EpisodeWorkflowInput> = {}): Promise<EpisodeWorkflowInput> {
  const plan = await scanRun(await makeRunFolder(shots));
  return {
    runDir: plan.runDir,
    runId: `${plan.runId}-${randomUUID().slice(0, 8)}`,
    episode: 1,
    shots: plan.episodes[0]!.shots.map((s) => ({ ...s, take: 1 })),
    done: [],
    generation: { ...DEFAULT_GENERATION, resolution: '480P' },
    deadlineSeconds: 7200,
    poll: DEFAULT_POLL_SCHEDULE,
    maxInFlight: 2,
    ...over,
  };
}

const run = (input: EpisodeWorkflowInput) => pipeline.env.client.workflow.start<typeof episodeWorkflow>('episodeWorkflow', { taskQueue, workflowId: `episode-${randomUUID()}`, args: [input] });

describe('episodeWorkflow', () => {
  it('starts one new take when the provider fails a task for a transient reason', async () => {
    const input = await episodeInput([{ episode: 1, shot: 1, prompt: '第一次会失败' }]);
    const before = pipeline.emulator.ledger().submissions.length;
    pipeline.emulator.setFaults({ failTasks: 1, failCode: 'InternalError' });
    const handle = await run(input);
    const result = await handle.result();
    expect(result).toMatchObject({ succeeded: 1, failed: 0 });
    expect(result.shots[0]).toMatchObject({ status: 'SUCCESS', take: 2 });
    expect(pipeline.emulator.ledger().submissions.length - before).toBe(2);
    expect((await readTaskRecord(input.runDir))['Episode-01-001']).toMatchObject({ status: 'SUCCESS', take: 2 });
    await maybeRecordHistory('episode-transient-retry', pipeline.env.client.workflow.getHandle(handle.workflowId));
  });

  it('gives up after the configured number of new takes', async () => {
    const input = await episodeInput([{ episode: 1, shot: 1, prompt: '总是失败 [emulator:fail=InternalError]' }], { transientRetries: 2 });
    const before = pipeline.emulator.ledger().submissions.length;
    const result = await (await run(input)).result();
    expect(result.shots[0]).toMatchObject({ status: 'FAILED', take: 3, errorCode: 'InternalError' });
    expect(pipeline.emulator.ledger().submissions.length - before).toBe(3);
  });

  it('does not pay again for a moderation block, and tells the user to edit the prompt', async () => {
    const input = await episodeInput([
      { episode: 1, shot: 1, prompt: '被拦截 [emulator:fail=DataInspectionFailed]' },
      { episode: 1, shot: 2, prompt: '提交即被拦截 [emulator:reject=DataInspectionFailed]' },
      { episode: 1, shot: 3, prompt: '正常' },
    ]);
    const before = pipeline.emulator.ledger();
    const handle = await run(input);
    const result = await handle.result();
    expect(result).toMatchObject({ succeeded: 1, failed: 2 });
    for (const shot of result.shots.filter((s) => s.status === 'FAILED')) {
      expect(shot).toMatchObject({ take: 1, errorCode: 'DataInspectionFailed' });
      expect(shot.errorMessage).toMatch(/Content moderation blocked this shot.*Edit the prompt/);
    }
    const after = pipeline.emulator.ledger();
    await maybeRecordHistory('episode-moderation', pipeline.env.client.workflow.getHandle(handle.workflowId));
    expect(after.submissions.length - before.submissions.length).toBe(2); // the rejected one was never accepted
    expect(after.posts - before.posts).toBe(3); // and each was sent exactly once
  });

  it('answers the progress query with every shot and its state', async () => {
    const input = await episodeInput([
      { episode: 1, shot: 1, prompt: '一' },
      { episode: 1, shot: 2, prompt: '二' },
      { episode: 1, shot: 3, prompt: '三' },
    ], { maxInFlight: 1 });
    const handle = await run(input);
    const early = await handle.query(episodeProgressQuery);
    expect(early.total).toBe(3);
    expect(early.shots.map((s) => s.key)).toEqual(['Episode-01-001', 'Episode-01-002', 'Episode-01-003']);
    expect(early.counts.queued + early.counts.preparing + early.counts.submitting + early.counts.generating).toBeGreaterThanOrEqual(2);
    await handle.result();
    const late = await handle.query(episodeProgressQuery);
    expect(late.counts.done).toBe(3);
    expect(late.shots.every((s) => s.phase === 'done' && s.taskId)).toBe(true);
  });

  it('continues as new to keep its history bounded, without losing results, learned timings or the progress query', async () => {
    const shots = Array.from({ length: 8 }, (_, i) => ({ episode: 1, shot: i + 1, prompt: `镜头 ${i + 1}` }));
    const input = await episodeInput(shots, { maxInFlight: 2, maxEventsPerRun: 60 });
    const handle = await run(input);
    const result = await handle.result();
    expect(result).toMatchObject({ total: 8, succeeded: 8, failed: 0 });
    expect(result.shots.map((s) => s.shot)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);

    const latest = await pipeline.env.client.workflow.getHandle(handle.workflowId).query(episodeProgressQuery);
    expect(latest.counts.done).toBe(8);
    const firstRun = (await pipeline.env.client.workflow.getHandle(handle.workflowId, handle.firstExecutionRunId).fetchHistory()).events ?? [];
    expect(firstRun.length).toBeLessThan(120);
    await maybeRecordHistory('episode-continue-as-new', pipeline.env.client.workflow.getHandle(handle.workflowId, handle.firstExecutionRunId));
    expect(firstRun.at(-1)?.eventType).toBe(temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
    const carried = firstRun.at(-1)?.workflowExecutionContinuedAsNewEventAttributes;
    expect(carried?.newExecutionRunId).toBeTruthy();
  });

  it('polls its first shots on the expected generation time, and later ones on what it has learned', async () => {
    const shots = Array.from({ length: 5 }, (_, i) => ({ episode: 1, shot: i + 1, prompt: `镜头 ${i + 1}` }));
    // The emulator's tasks take a fraction of a second; the expectation says 10–15 min.
    const input = await episodeInput(shots, { maxInFlight: 1, expectedGeneration: { earliestSeconds: 600, typicalSeconds: 700, latestSeconds: 900 } });
    const result = await (await run(input)).result();
    expect(result).toMatchObject({ succeeded: 5, failed: 0 });
    const dense = DEFAULT_POLL_SCHEDULE.denseSeconds!;
    const firstWaits = await Promise.all(result.shots.map(async (s) => {
      const events = (await pipeline.env.client.workflow.getHandle(shotWorkflowId(input.runId, 1, s.shot, 1)).fetchHistory()).events ?? [];
      // Timers in order: the 2 h deadline, then the wait before the first check.
      const timers = events.flatMap((e) => (e.timerStartedEventAttributes ? [Number(String(e.timerStartedEventAttributes.startToFireTimeout?.seconds ?? 0))] : []));
      expect(timers[0]).toBe(7200);
      return timers[1];
    }));
    // No check is spent before the expected earliest finish: the first three shots check first 600 s + dense in.
    expect(firstWaits.slice(0, 3)).toEqual([600 + dense, 600 + dense, 600 + dense]);
    // Three finished shots are enough to learn from: the next ones check within seconds, as their tasks do.
    for (const wait of firstWaits.slice(3)) expect(wait).toBeLessThanOrEqual(dense + 3);
  });

  it.each([
    { name: 'without an expected window', over: {} },
    // The hint comes 8 s in, just before the window closes at 10 s: it still holds for 4 × the cap from then.
    { name: 'with an expected window that closes right after the hint', over: { expectedGeneration: { earliestSeconds: 0, typicalSeconds: 5, latestSeconds: 10 } } },
  ])('tells its last running shots to check more often, for a bounded time ($name)', async ({ over }) => {
    const input = await episodeInput([{ episode: 1, shot: 1, prompt: '很快' }, { episode: 1, shot: 2, prompt: '卡住 [emulator:stuck]' }], { deadlineSeconds: 1200, ...over });
    const handle = await run(input);
    const result = await handle.result();
    expect(result.shots.map((s) => s.status)).toEqual(['SUCCESS', 'FAILED']);
    const shot = pipeline.env.client.workflow.getHandle(shotWorkflowId(input.runId, 1, 2, 1));
    if (!input.expectedGeneration) {
      await maybeRecordHistory('episode-poll-hints', pipeline.env.client.workflow.getHandle(handle.workflowId));
      await maybeRecordHistory('shot-poll-hint', shot);
    } else {
      await maybeRecordHistory('shot-poll-hint-window', shot);
    }
    const events = (await shot.fetchHistory()).events ?? [];
    const hintAt = events.findIndex((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'pollHint');
    expect(hintAt).toBeGreaterThan(0); // once shot 1 was done, shot 2 was all the episode waited for
    const seconds = (d: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(String(d?.seconds ?? 0)) + (d?.nanos ?? 0) / 1e9;
    const waits = (from: number, to: number) => events.slice(from, to).flatMap((e) => (e.timerStartedEventAttributes ? [seconds(e.timerStartedEventAttributes.startToFireTimeout)] : []));
    const before = waits(0, hintAt).slice(1); // without the 2 h deadline timer
    const after = waits(hintAt, events.length);
    const { initialSeconds, maxSeconds, endgameSeconds } = DEFAULT_POLL_SCHEDULE;
    // Before the hint, the usual schedule; after it, a check every 2 s for 4 × the 60 s cap, then the backoff again.
    expect(before[0]).toBe(input.expectedGeneration ? DEFAULT_POLL_SCHEDULE.denseSeconds : initialSeconds);
    expect(endgameSeconds).toBe(2);
    const hinted = after.filter((w) => w <= endgameSeconds!).length;
    expect(hinted).toBeGreaterThanOrEqual((4 * maxSeconds) / endgameSeconds! - 2);
    expect(hinted).toBeLessThanOrEqual((4 * maxSeconds) / endgameSeconds! + 2);
    expect(after.at(-1)).toBe(maxSeconds);
  });

  it('hints as many running shots as its size calls for: 4 % of them, 3 to 8', async () => {
    expect([1, 20, 100, 150, 200, 1000].map(endgameShotsFor)).toEqual([3, 3, 4, 6, 8, 8]);
    // Four takes that never finish, all started at once, in an episode that hints four (as one of 100 shots
    // would): the episode waits on them alone from the start. With 3, none would be hinted until one ended.
    const shots = Array.from({ length: 4 }, (_, i) => ({ episode: 1, shot: i + 1, prompt: `卡住 ${i + 1} [emulator:stuck]` }));
    const input = await episodeInput(shots, { maxInFlight: 4, deadlineSeconds: 60, endgameShots: 4 });
    const handle = await run(input);
    const result = await handle.result();
    expect(result.shots.map((s) => s.errorCode)).toEqual(['DeadlineExceeded', 'DeadlineExceeded', 'DeadlineExceeded', 'DeadlineExceeded']);
    await maybeRecordHistory('episode-endgame-by-size', pipeline.env.client.workflow.getHandle(handle.workflowId));
    const { endgameSeconds } = DEFAULT_POLL_SCHEDULE;
    for (const s of shots) {
      const events = (await pipeline.env.client.workflow.getHandle(shotWorkflowId(input.runId, 1, s.shot, 1)).fetchHistory()).events ?? [];
      expect(events.filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'pollHint')).toHaveLength(1);
      // Checked every 2 s up to the 60 s deadline, not on the backoff (5, 7.5, 11.25 … s).
      const waits = events.flatMap((e) => (e.timerStartedEventAttributes ? [Number(String(e.timerStartedEventAttributes.startToFireTimeout?.seconds ?? 0))] : []));
      expect(waits.filter((w) => w === endgameSeconds).length).toBeGreaterThanOrEqual(60 / endgameSeconds! - 6);
    }
  });

  it('takes regenerate requests while it runs: a new take for a running shot, a new prompt for a queued one', async () => {
    // Both images passed a pre-flight as they are (take 1).
    const input = await episodeInput([{ episode: 1, shot: 1, prompt: '第一版' }, { episode: 1, shot: 2, prompt: '还没开始' }], { maxInFlight: 1, imagesAsIs: { 'Episode-01-001': 1, 'Episode-01-002': 1 } });
    const handle = await run(input);
    // A take that has not started only gets the new prompt: wait until shot 1's is under way (or already done,
    // which also makes the request a new take). An update arriving with the episode's first task would find it queued.
    for (let tries = 0; (await handle.query(episodeProgressQuery)).shots[0]!.phase === 'queued'; tries++) {
      if (tries > 500) throw new Error('shot 1 did not start');
      await new Promise((r) => setTimeout(r, 20));
    }
    const running = await handle.executeUpdate(regenerateUpdate, { args: [{ shot: 1, prompt: '第二版' }] });
    const queued = await handle.executeUpdate(regenerateUpdate, { args: [{ shot: 2, prompt: '改过的提示词' }] });
    expect(running).toMatchObject({ key: 'Episode-01-001', take: 2 });
    expect(queued).toMatchObject({ key: 'Episode-01-002', take: 1 });
    await expect(handle.executeUpdate(regenerateUpdate, { args: [{ shot: 9 }] })).rejects.toMatchObject({ cause: { message: expect.stringMatching(/not part of this episode/) } });

    const result = await handle.result();
    expect(result.shots.map((s) => [s.shot, s.status, s.take])).toEqual([[1, 'SUCCESS', 2], [2, 'SUCCESS', 1]]);
    const records = await readTaskRecord(input.runDir);
    expect(records['Episode-01-001']).toMatchObject({ take: 2, prompt: '第二版' });
    expect(records['Episode-01-001']!.takes!.map((t) => [t.take, t.status])).toEqual([[1, 'SUCCESS'], [2, 'SUCCESS']]);
    expect(records['Episode-01-002']).toMatchObject({ take: 1, prompt: '改过的提示词' });
    // The checked takes are sent as they are; the new take, whose image nobody checked, is prepared first.
    const firstActivity = async (shot: number, take: number) => activitiesScheduled(await pipeline.env.client.workflow.getHandle(shotWorkflowId(input.runId, 1, shot, take)).fetchHistory())[0];
    expect([await firstActivity(1, 1), await firstActivity(1, 2), await firstActivity(2, 1)]).toEqual(['submitTask', 'prepareImage', 'submitTask']);
    await maybeRecordHistory('episode-regenerate', pipeline.env.client.workflow.getHandle(handle.workflowId));
  });
});
