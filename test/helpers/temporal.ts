/** Test servers from the project's pinned binaries (no internet needed), and a worker wired to real activities. */
import { TestWorkflowEnvironment } from '@temporalio/testing';
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
