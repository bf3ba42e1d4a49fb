/**
 * The shot workflow on the time-skipping test server, with its real activities talking HTTP to the emulator:
 * the 2 h deadline, the backoff schedule, failed tasks, and never paying twice for one take.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { temporal } from '@temporalio/proto';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DEFAULTS, DEFAULT_GENERATION, providerConfig } from '../src/config';
import { createActivities } from '../src/activities';
import { createProviderClient } from '../src/provider/client';
import { markSubmissionStarted, readSubmission, recordSubmission } from '../src/runs/journal';
import { readTaskRecord } from '../src/runs/taskRecord';
import { scanRun } from '../src/runs/scan';
import { submissionKey } from '../src/workflows/ids';
import { DEFAULT_POLL_SCHEDULE, pollDelaySeconds } from '../src/workflows/polling';
import type { ShotWorkflowInput } from '../src/workflows/types';
import { activitiesScheduled, maybeRecordHistory, patchMarkers, searchAttributeUpserts } from './helpers/histories';
import { makeRunFolder } from './helpers/runFolder';
import { useTimeSkippingPipeline } from './helpers/temporal';

const EventType = temporal.api.enums.v1.EventType;

const taskQueue = 'shot-tests';
const pipeline = useTimeSkippingPipeline(taskQueue, { pendingMs: 0, runningMs: 200, videoSeconds: 1 });

async function shotInput(prompt: string, take = 1): Promise<ShotWorkflowInput> {
  const runDir = await makeRunFolder([{ episode: 1, shot: 1, prompt }]);
  const plan = await scanRun(runDir);
  const planned = plan.episodes[0]!.shots[0]!;
  return { runDir: plan.runDir, runId: `${plan.runId}-${randomUUID().slice(0, 8)}`, shot: { ...planned, take }, generation: { ...DEFAULT_GENERATION, resolution: '480P' }, deadlineSeconds: 7200, poll: DEFAULT_POLL_SCHEDULE };
}

/** Waits (bounded) until the emulator has finished rendering the task. */
async function eventuallyDone(provider: ReturnType<typeof createProviderClient>, taskId: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await provider.getTask(taskId)).done) {
    if (Date.now() > deadline) throw new Error(`task ${taskId} did not finish`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function start(input: ShotWorkflowInput) {
  return pipeline.env.client.workflow.start('shotWorkflow', { taskQueue, workflowId: `shot-${randomUUID()}`, args: [input] });
}

/** Status checks the schedule allows within the deadline: one after each delay, plus the one at the deadline. */
function expectedPolls(deadlineSeconds: number): number {
  let elapsed = 0;
  let polls = 0;
  while (elapsed + pollDelaySeconds(polls, DEFAULT_POLL_SCHEDULE) < deadlineSeconds) {
    elapsed += pollDelaySeconds(polls, DEFAULT_POLL_SCHEDULE);
    polls++;
  }
  return polls + 1;
}

describe('shotWorkflow', () => {
  it('stops a task that never finishes at the 2 h deadline, polling on the capped backoff, in under 2,000 history events', async () => {
    const before = pipeline.emulator.ledger();
    const input = await shotInput('a task the provider never finishes [emulator:stuck]');
    const handle = await start(input);
    const result = await handle.result();

    expect(result.status).toBe('FAILED');
    expect(result.errorCode).toBe('DeadlineExceeded');
    expect(result.errorMessage).toContain(result.taskId);
    expect(result.polls).toBe(expectedPolls(7200));

    const after = pipeline.emulator.ledger();
    expect(after.submissions.length - before.submissions.length).toBe(1);
    expect(after.gets - before.gets).toBe(result.polls);

    const events = (await handle.fetchHistory()).events ?? [];
    const timers = events
      .filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED)
      .map((e) => Number(e.timerStartedEventAttributes?.startToFireTimeout?.seconds ?? 0) + (e.timerStartedEventAttributes?.startToFireTimeout?.nanos ?? 0) / 1e9);
    // The deadline timer, then 5 s growing ×1.5 to the 60 s cap.
    expect(timers[0]).toBe(7200);
    expect(timers.slice(1, 9)).toEqual([5, 7.5, 11.25, 16.875, 25.313, 37.969, 56.953, 60]);
    expect(Math.max(...timers.slice(1))).toBe(60);
    console.log(`2 h deadline: ${result.polls} polls, ${events.length} history events`);
    expect(events.length).toBeLessThan(2000);
    await maybeRecordHistory('shot-deadline', handle);
  });

  it('reports a FAILED task with the provider code and message, after one paid submission', async () => {
    const before = pipeline.emulator.ledger();
    const input = await shotInput('the provider fails this one [emulator:fail=InternalError]');
    const handle = await start(input);
    const result = await handle.result();

    expect(result).toMatchObject({ status: 'FAILED', errorCode: 'InternalError' });
    expect(result.errorMessage).toMatch(/provider failed the task: InternalError/);
    expect(pipeline.emulator.ledger().submissions.length - before.submissions.length).toBe(1);
    const record = (await readTaskRecord(input.runDir))[input.shot.key];
    expect(record).toMatchObject({ status: 'FAILED', task_id: result.taskId, error_code: 'InternalError' });
    await maybeRecordHistory('shot-failed', handle);
  });

  it('downloads the video and thumbnails of a successful task', async () => {
    const input = await shotInput('镜头缓慢推进，人物微笑');
    const handle = await start(input);
    const result = await handle.result();
    expect(result.status).toBe('SUCCESS');
    const record = (await readTaskRecord(input.runDir))[input.shot.key];
    expect(record).toMatchObject({ status: 'SUCCESS', task_id: result.taskId, video_path: '08_generated_videos/Episode-01/Episode-01-Shot-001.mp4' });
    // One patch marker for all its changes, so one write of TemporalChangeVersion to the visibility store.
    const history = await handle.fetchHistory();
    expect(patchMarkers(history)).toEqual(['shot-patches-1']);
    expect(searchAttributeUpserts(history, 'TemporalChangeVersion')).toBe(1);
    await maybeRecordHistory('shot-success', handle);
  });

  it('submits an image the pre-flight found acceptable as it is without a separate preparation step', async () => {
    const input = { ...(await shotInput('镜头缓慢拉远')), imageAsIs: true };
    const before = pipeline.emulator.ledger();
    const handle = await start(input);
    const result = await handle.result();
    expect(result.status).toBe('SUCCESS');
    // The original file, byte for byte, as a PNG: the submission checked it and sent it as it is.
    const sent = pipeline.emulator.ledger().submissions.slice(before.submissions.length);
    expect(sent).toEqual([expect.objectContaining({ imageSha256: createHash('sha256').update(await readFile(input.shot.imagePath)).digest('hex'), mime: 'image/png' })]);
    const scheduled = activitiesScheduled(await handle.fetchHistory());
    expect(scheduled[0]).toBe('submitTask');
    expect(scheduled).not.toContain('prepareImage');
    await maybeRecordHistory('shot-image-as-is', handle);
  });

  it('fails a shot whose image, found acceptable as it is before the run, is broken by the time it is sent, paying for nothing', async () => {
    const input = { ...(await shotInput('图片在提交前被截断')), imageAsIs: true };
    const bytes = await readFile(input.shot.imagePath);
    await writeFile(input.shot.imagePath, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const before = pipeline.emulator.ledger();
    const result = await (await start(input)).result();
    expect(result).toMatchObject({ status: 'FAILED', errorCode: 'InputError' });
    expect(result.errorMessage).toMatch(/Episode-01-Shot-001\.png/);
    expect(pipeline.emulator.ledger().posts - before.posts).toBe(0);
    expect(await readSubmission(input.runDir, submissionKey(1, 1, 1))).toBeUndefined();
  });

  it('re-uses a task recorded for a take sent as it is, without checking an image that is gone since', async () => {
    const input = { ...(await shotInput('提交后图片被移走')), imageAsIs: true };
    const provider = createProviderClient(providerConfig('emulator', { baseUrl: pipeline.emulator.baseUrl }));
    const submitted = await provider.submit({ image: { path: input.shot.imagePath, mime: 'image/png' }, prompt: input.shot.prompt, params: input.generation });
    await recordSubmission(input.runDir, submissionKey(1, 1, 1), { taskId: submitted.taskId, submittedAt: new Date().toISOString() });
    await rm(input.shot.imagePath);

    const before = pipeline.emulator.ledger();
    const result = await (await start(input)).result();
    expect(result).toMatchObject({ status: 'SUCCESS', taskId: submitted.taskId });
    expect(pipeline.emulator.ledger().posts - before.posts).toBe(0);
  });

  it('re-uses a task id already recorded for the take instead of submitting again (crash after the POST)', async () => {
    const input = await shotInput('submitted before the worker crashed');
    const provider = createProviderClient(providerConfig('emulator', { baseUrl: pipeline.emulator.baseUrl }));
    const submitted = await provider.submit({ image: { path: input.shot.imagePath, mime: 'image/png' }, prompt: input.shot.prompt, params: input.generation });
    await recordSubmission(input.runDir, submissionKey(1, 1, 1), { taskId: submitted.taskId, submittedAt: new Date().toISOString() });

    const before = pipeline.emulator.ledger();
    const result = await (await start(input)).result();
    expect(result).toMatchObject({ status: 'SUCCESS', taskId: submitted.taskId });
    expect(pipeline.emulator.ledger().posts - before.posts).toBe(0);
  });

  it('checks a task once more, instead of giving up, when a later run finds it past its deadline', async () => {
    const input = await shotInput('finished while nobody was watching');
    const provider = createProviderClient(providerConfig('emulator', { baseUrl: pipeline.emulator.baseUrl }));
    const submitted = await provider.submit({ image: { path: input.shot.imagePath, mime: 'image/png' }, prompt: input.shot.prompt, params: input.generation });
    const threeHoursAgo = new Date(Date.now() - 3 * 3600_000).toISOString();
    await recordSubmission(input.runDir, submissionKey(1, 1, 1), { taskId: submitted.taskId, submittedAt: threeHoursAgo });
    await eventuallyDone(provider, submitted.taskId);

    const before = pipeline.emulator.ledger();
    const result = await (await start(input)).result();
    expect(result).toMatchObject({ status: 'SUCCESS', taskId: submitted.taskId, polls: 1 });
    expect(pipeline.emulator.ledger().posts - before.posts).toBe(0);
    expect(pipeline.emulator.ledger().gets - before.gets).toBe(1);
  });

  it('does not repeat a submission whose outcome is unknown, and says what to do', async () => {
    const input = await shotInput('the POST was sent, then the worker died');
    await markSubmissionStarted(input.runDir, submissionKey(1, 1, 1));
    const before = pipeline.emulator.ledger();
    const result = await (await start(input)).result();
    expect(result).toMatchObject({ status: 'FAILED', errorCode: 'SUBMIT_UNCERTAIN' });
    expect(result.errorMessage).toMatch(/i2v regenerate/);
    expect(pipeline.emulator.ledger().posts - before.posts).toBe(0);
  });
});

describe('submitTask', () => {
  it('does not send an image edited after it was prepared, and says to regenerate', async () => {
    const input = await shotInput('edited after it was prepared');
    const provider = providerConfig('emulator', { baseUrl: pipeline.emulator.baseUrl });
    const activities = createActivities({ provider: createProviderClient(provider), secrets: [provider.apiKey], maxVideoBytes: DEFAULTS.maxVideoBytes, smallThumbnailWidth: DEFAULTS.thumbnailSmallWidth });
    const env = new MockActivityEnvironment();
    type Prepared = Awaited<ReturnType<typeof activities.prepareImage>>;
    const prepared = (await env.run(activities.prepareImage, { runDir: input.runDir, imagePath: input.shot.imagePath })) as Prepared;
    const bytes = await readFile(prepared.path);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(prepared.path, bytes);

    const before = pipeline.emulator.ledger();
    const key = submissionKey(1, 1, 1);
    const submit = env.run(activities.submitTask, {
      runDir: input.runDir, submissionKey: key, image: { path: prepared.path, mime: prepared.mime, sha256: prepared.fileSha256 }, prompt: input.shot.prompt, generation: input.generation,
    });
    await expect(submit).rejects.toMatchObject({ type: 'ImageChanged', nonRetryable: true, message: expect.stringMatching(/not the one that was prepared.*i2v regenerate/) });
    // The request began but ended short of its length: the provider created nothing.
    expect(pipeline.emulator.ledger().posts - before.posts).toBe(1);
    expect(pipeline.emulator.ledger().submissions.length - before.submissions.length).toBe(0);
    // Nothing was submitted, so the journal holds nothing that would stop a new take.
    expect(await readSubmission(input.runDir, key)).toBeUndefined();
  });

  it('sends nothing, and leaves the take unmarked for the next attempt, once getting ready has used half the attempt\'s time', async () => {
    const input = await shotInput('检查图片花了太久');
    const provider = providerConfig('emulator', { baseUrl: pipeline.emulator.baseUrl });
    // The clock jumps 61 s after the attempt starts: the image check, or a wait for a CPU slot, took that long.
    let calls = 0;
    const now = () => new Date(Date.now() + (calls++ > 0 ? 61_000 : 0));
    const activities = createActivities({ provider: createProviderClient(provider), secrets: [provider.apiKey], maxVideoBytes: DEFAULTS.maxVideoBytes, smallThumbnailWidth: DEFAULTS.thumbnailSmallWidth, now });
    const env = new MockActivityEnvironment({ startToCloseTimeoutMs: 120_000 });
    const before = pipeline.emulator.ledger();
    const key = submissionKey(1, 1, 1);
    const submit = env.run(activities.submitTask, {
      runDir: input.runDir, submissionKey: key, source: { imagePath: input.shot.imagePath }, prompt: input.shot.prompt, generation: input.generation,
    });
    await expect(submit).rejects.toMatchObject({ type: 'SubmitTooLate', nonRetryable: false, message: expect.stringMatching(/took 61 s of this attempt's 120 s, so nothing was sent/) });
    expect(pipeline.emulator.ledger().posts - before.posts).toBe(0);
    expect(await readSubmission(input.runDir, key)).toBeUndefined();
  });
});
