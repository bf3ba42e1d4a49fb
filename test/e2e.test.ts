/**
 * End to end on a real Temporal dev server: run folder in, verified videos, thumbnails and tasks.json out,
 * through the same code path as `i2v run`, with the emulator over real HTTP.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { DEFAULT_GENERATION, providerConfig } from '../src/config';
import { startEmulator, type Emulator } from '../src/emulator';
import { probeVideo } from '../src/media/video';
import { readTaskRecord } from '../src/runs/taskRecord';
import type { RunSettings } from '../src/cli/plan';
import { runCommand } from '../src/cli/run';
import { requestRegeneration, waitForShot } from '../src/cli/regenerate';
import type { TemporalHandle } from '../src/temporal/connection';
import { createWorker } from '../src/worker';
import { episodeWorkflowId, shotWorkflowId } from '../src/workflows/ids';
import { activitiesScheduled, maybeRecordHistory } from './helpers/histories';
import { imageDistance, makeRunFolder } from './helpers/runFolder';
import { devServerEnv } from './helpers/temporal';
import { assertInputsUnchanged, snapshotInputs } from './helpers/inputs';

let env: TestWorkflowEnvironment;
let emulator: Emulator;
let temporal: TemporalHandle;

const settings: RunSettings = {
  generation: { ...DEFAULT_GENERATION, resolution: '480P' },
  deadlineSeconds: 600,
  poll: { initialSeconds: 0.5, factor: 1.5, maxSeconds: 2 },
  maxInFlight: 2,
};

beforeAll(async () => {
  [env, emulator] = await Promise.all([devServerEnv(), startEmulator({ pendingMs: 200, runningMs: 800, videoSeconds: 2 })]);
  temporal = { client: env.client, nativeConnection: env.nativeConnection, address: env.address, namespace: 'default', startedServer: false, searchAttributes: true, close: async () => undefined };
});

afterAll(async () => {
  await env?.teardown();
  await emulator?.close();
});

/** Visibility is eventually consistent: retry a read until it returns something, within a deadline. */
async function eventually<T>(read: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met before the deadline');
    await new Promise((r) => setTimeout(r, 200));
  }
}

const quiet = () => new Writable({ write: (_chunk, _enc, done) => done() }) as unknown as NodeJS.WriteStream;
const provider = () => providerConfig('emulator', { baseUrl: emulator.baseUrl });

describe('i2v run, end to end', () => {
  it('turns a run folder into verified videos, thumbnails and a task record, and a second run submits nothing', async () => {
    const runDir = await makeRunFolder([
      { episode: 1, shot: 1, prompt: '镜头缓慢推进' },
      { episode: 1, shot: 2, prompt: '人物转身' },
      { episode: 1, shot: 3, prompt: '云层流动', width: 720, height: 1280 },
      { episode: 2, shot: 1, prompt: '夜色降临' },
    ]);
    const before = emulator.ledger().submissions.length;
    const inputs = await snapshotInputs(runDir);
    const summary = await runCommand(runDir, { provider: provider(), settings, temporal, out: quiet(), refreshMs: 200 });
    expect(summary).toMatchObject({ succeeded: 4, failed: 0 });
    await assertInputsUnchanged(runDir, inputs); // not a byte, not a modification time
    expect(emulator.ledger().submissions.length - before).toBe(4);

    const records = await readTaskRecord(summary.plan.runDir);
    expect(Object.keys(records).sort()).toEqual(['Episode-01-001', 'Episode-01-002', 'Episode-01-003', 'Episode-02-001']);
    for (const [key, record] of Object.entries(records)) {
      expect(record.status, key).toBe('SUCCESS');
      expect(record.task_id).toBeTruthy();
      expect(record.submit_time).toBeTruthy();
      expect(record.complete_time).toBeTruthy();
      expect(record.error_message).toBeNull();
      const video = path.join(summary.plan.runDir, record.video_path!);
      const info = await probeVideo(video);
      expect(info.codec).toBe('h264');
      expect(info.durationSeconds).toBeGreaterThan(1.5);
      const thumbnail = path.join(summary.plan.runDir, record.thumbnail_path!);
      const image = path.join(summary.plan.runDir, record.image_path);
      expect(await imageDistance(thumbnail, image)).toBeLessThan(12);
      expect(existsSync(thumbnail.replace('-thumbnail.png', '-thumbnail-small.png'))).toBe(true);
    }
    const leftovers = (await readdir(path.join(summary.plan.runDir, '08_generated_videos'), { recursive: true })).filter((f) => /\.part$|\.tmp/.test(String(f)));
    expect(leftovers).toEqual([]);
    await maybeRecordHistory('episode-success', env.client.workflow.getHandle(episodeWorkflowId(summary.plan.runId, 1)));
    // A shot that keeps its I2vState search attribute up to date, as every run on a server that has it does.
    await maybeRecordHistory('shot-search-attributes', env.client.workflow.getHandle(shotWorkflowId(summary.plan.runId, 1, 1, 1)));

    // The Web UI (and `temporal workflow list`) can filter this run's workflows by search attribute.
    const listed = await eventually(async () => {
      const found: Array<{ id: string; state: unknown; summary?: string }> = [];
      for await (const wf of temporal.client.workflow.list({ query: `I2vRun="${summary.plan.runId}"` })) {
        found.push({ id: wf.workflowId, state: wf.searchAttributes.I2vState?.[0] });
      }
      return found.length === 6 ? found : undefined;
    });
    expect(listed.map((w) => w.state).sort()).toEqual(['done', 'done', 'done', 'done', 'done', 'done']);
    // Each change of I2vState is a visibility write: a shot changes it twice (it starts as 'preparing').
    const shotHistory = await env.client.workflow.getHandle(shotWorkflowId(summary.plan.runId, 1, 1, 1)).fetchHistory();
    const states = shotHistory.events!.flatMap((e) => {
      const fields = e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields;
      return fields?.I2vState ? [JSON.parse(Buffer.from(fields.I2vState.data!).toString())] : [];
    });
    expect(states).toEqual(['generating', 'done']);
    // Its image passed the pre-flight as it is, so the submission checked it itself, with no preparation step before it.
    const scheduled = activitiesScheduled(shotHistory);
    expect(scheduled[0]).toBe('submitTask');
    expect(scheduled).not.toContain('prepareImage');

    const posts = emulator.ledger().posts;
    const again = await runCommand(runDir, { provider: provider(), settings, temporal, out: quiet(), refreshMs: 200 });
    expect(again).toMatchObject({ succeeded: 4, failed: 0 });
    expect(again.results.flatMap((r) => r.shots).every((s) => s.skipped)).toBe(true);
    expect(emulator.ledger().posts).toBe(posts);
  });

  it('finishes the other shots when one fails, and reports why', async () => {
    const runDir = await makeRunFolder([
      { episode: 1, shot: 1, prompt: '正常镜头' },
      { episode: 1, shot: 2, prompt: '被审核拦截 [emulator:fail=DataInspectionFailed]' },
    ]);
    const summary = await runCommand(runDir, { provider: provider(), settings, temporal, out: quiet(), refreshMs: 200 });
    expect(summary).toMatchObject({ succeeded: 1, failed: 1 });
    const failed = summary.results[0]!.shots.find((s) => s.status === 'FAILED')!;
    expect(failed).toMatchObject({ key: 'Episode-01-002', errorCode: 'DataInspectionFailed' });
    const records = await readTaskRecord(summary.plan.runDir);
    expect(records['Episode-01-002']).toMatchObject({ status: 'FAILED', error_code: 'DataInspectionFailed' });
    expect(records['Episode-01-002']!.error_message).toMatch(/DataInspectionFailed/);
  });

  it('regenerates one shot as a new take and keeps the earlier take', async () => {
    const runDir = await makeRunFolder([{ episode: 1, shot: 1, prompt: '第一版' }, { episode: 1, shot: 2, prompt: '不变' }]);
    const first = await runCommand(runDir, { provider: provider(), settings, temporal, out: quiet(), refreshMs: 200 });
    expect(first.succeeded).toBe(2);
    const firstTask = (await readTaskRecord(first.plan.runDir))['Episode-01-001']!.task_id;

    const worker = await createWorker({ connection: temporal.nativeConnection, namespace: 'default', provider: provider() });
    const running = worker.run();
    try {
      const { workflowId, episodeWorkflowId: episodeId, take } = await requestRegeneration(temporal.client, runDir, { episode: 1, shot: 1, prompt: '第二版：镜头拉远', settings, searchAttributes: true });
      expect(take).toBe(2);
      const result = await waitForShot(temporal.client, episodeId, workflowId);
      expect(result).toMatchObject({ status: 'SUCCESS', take: 2 });
      // A new take may come with a new image, which nothing has checked yet: it is prepared first.
      expect(activitiesScheduled(await temporal.client.workflow.getHandle(workflowId).fetchHistory())[0]).toBe('prepareImage');
    } finally {
      worker.shutdown();
      await running;
    }
    const record = (await readTaskRecord(first.plan.runDir))['Episode-01-001']!;
    expect(record).toMatchObject({ status: 'SUCCESS', take: 2, prompt: '第二版：镜头拉远' });
    expect(record.task_id).not.toBe(firstTask);
    // Every take is listed with its task id, where its video is now, and what it cost (2 s at ¥0.10/s, 480P).
    expect(record.takes).toEqual([
      expect.objectContaining({ take: 1, task_id: firstTask, status: 'SUCCESS', video_path: '08_generated_videos/Episode-01/takes/Episode-01-Shot-001-take-1.mp4', cost: 0.2, currency: 'CNY' }),
      expect.objectContaining({ take: 2, task_id: record.task_id, status: 'SUCCESS', video_path: '08_generated_videos/Episode-01/Episode-01-Shot-001.mp4', cost: 0.2, currency: 'CNY' }),
    ]);
    const episodeDir = path.join(first.plan.runDir, '08_generated_videos', 'Episode-01');
    expect(await readdir(path.join(episodeDir, 'takes'))).toEqual(['Episode-01-Shot-001-take-1.mp4']);
    await probeVideo(path.join(episodeDir, 'takes', 'Episode-01-Shot-001-take-1.mp4'));
    await probeVideo(path.join(episodeDir, 'Episode-01-Shot-001.mp4'));
  });
});
