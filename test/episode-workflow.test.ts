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
import { DEFAULT_POLL_SCHEDULE } from '../src/workflows/polling';
import { episodeProgressQuery, regenerateUpdate } from '../src/workflows/messages';
import { maybeRecordHistory } from './helpers/histories';
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

  it('takes regenerate requests while it runs: a new take for a running shot, a new prompt for a queued one', async () => {
    const input = await episodeInput([{ episode: 1, shot: 1, prompt: '第一版' }, { episode: 1, shot: 2, prompt: '还没开始' }], { maxInFlight: 1 });
    const handle = await run(input);
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
    await maybeRecordHistory('episode-regenerate', pipeline.env.client.workflow.getHandle(handle.workflowId));
  });
});
