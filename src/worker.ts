/**
 * The worker: runs the workflows and the activities. Activities get the provider client and its API key
 * from this process's own configuration; nothing secret travels through Temporal.
 */
import path from 'node:path';
import { bundleWorkflowCode, NativeConnection, Worker, type WorkflowBundle } from '@temporalio/worker';
import { createActivities } from './activities';
import { DEFAULTS, type ProviderConfig } from './config';
import { createProviderClient } from './provider/client';
import { ensureRuntime } from './temporal/runtime';

export const TASK_QUEUE = 'i2v-pipeline';

let bundle: Promise<WorkflowBundle> | undefined;

/**
 * Workflow code bundled once per process (bundling takes seconds; tests and the CLI reuse it). A folder path, not
 * require.resolve, so it works from the TypeScript sources (tests) and from dist/ alike.
 */
export function workflowBundle(): Promise<WorkflowBundle> {
  bundle ??= bundleWorkflowCode({ workflowsPath: path.join(__dirname, 'workflows'), logger: quietLogger });
  return bundle;
}

export interface WorkerOptions {
  connection: NativeConnection;
  namespace: string;
  provider: ProviderConfig;
  taskQueue?: string;
  /** Activities running at once in this process (downloads, ffmpeg, API calls). */
  maxConcurrentActivities?: number;
}

export async function createWorker(opts: WorkerOptions): Promise<Worker> {
  ensureRuntime();
  const activities = createActivities({
    provider: createProviderClient(opts.provider),
    secrets: [opts.provider.apiKey],
    maxVideoBytes: DEFAULTS.maxVideoBytes,
    smallThumbnailWidth: DEFAULTS.thumbnailSmallWidth,
  });
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    workflowBundle: await workflowBundle(),
    activities,
    maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivities ?? 8,
  });
}

/** Stops a worker if it is still running (it may already be draining after a signal or a fatal error). */
export function stopWorker(worker: Worker): void {
  if (worker.getState() === 'RUNNING') worker.shutdown();
}

const noop = (): void => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: (msg: string) => console.error(msg), log: noop };
