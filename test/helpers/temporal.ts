/** Test servers from the project's pinned binaries (no internet needed), and a worker wired to real activities. */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll } from 'vitest';
import { startEmulator, type Emulator, type EmulatorOptions } from '../../src/emulator';
import { Worker, type NativeConnection } from '@temporalio/worker';
import { createActivities } from '../../src/activities';
import { DEFAULTS, providerConfig } from '../../src/config';
import { createProviderClient } from '../../src/provider/client';
import { resolveTemporalTool } from '../../src/temporal/binaries';
import { workflowBundle } from '../../src/worker';
import { ensureRuntime } from '../../src/temporal/runtime';
import { SEARCH_ATTRIBUTES } from '../../src/workflows/searchAttributes';

export function timeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  ensureRuntime();
  return TestWorkflowEnvironment.createTimeSkipping({ server: { executable: resolveTemporalTool('temporal-test-server').executable } });
}

export function devServerEnv(): Promise<TestWorkflowEnvironment> {
  ensureRuntime();
  return TestWorkflowEnvironment.createLocal({
    server: { executable: resolveTemporalTool('temporal').executable, log: { format: 'pretty', level: 'error' }, searchAttributes: SEARCH_ATTRIBUTES },
  });
}

/** A worker running the real workflows and activities against the emulator at `baseUrl`. */
export async function emulatorWorker(connection: NativeConnection, taskQueue: string, baseUrl: string, namespace = 'default'): Promise<Worker> {
  const provider = providerConfig('emulator', { baseUrl });
  return Worker.create({
    connection,
    namespace,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities({
      provider: createProviderClient(provider),
      secrets: [provider.apiKey],
      maxVideoBytes: DEFAULTS.maxVideoBytes,
      smallThumbnailWidth: DEFAULTS.thumbnailSmallWidth,
    }),
  });
}

export interface Pipeline {
  env: TestWorkflowEnvironment;
  emulator: Emulator;
}

/**
 * A time-skipping server, the emulator and a worker with the real activities on `taskQueue`, set up before the
 * file's tests and torn down after them. The returned object is filled in by `beforeAll`.
 */
export function useTimeSkippingPipeline(taskQueue: string, emulatorOptions: EmulatorOptions): Pipeline {
  const pipeline = {} as Pipeline;
  let worker: Worker | undefined;
  let running: Promise<void> | undefined;
  beforeAll(async () => {
    [pipeline.env, pipeline.emulator] = await Promise.all([timeSkippingEnv(), startEmulator(emulatorOptions)]);
    worker = await emulatorWorker(pipeline.env.nativeConnection, taskQueue, pipeline.emulator.baseUrl);
    running = worker.run();
  });
  afterAll(async () => {
    worker?.shutdown();
    await running;
    await pipeline.env?.teardown();
    await pipeline.emulator?.close();
  });
  return pipeline;
}
