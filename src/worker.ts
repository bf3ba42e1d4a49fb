/**
 * Workers: the workflows and the activities, split over task queues by the kind of work, so a deployment can
 * place each where it belongs (see README "Running on several machines"):
 *   i2v-pipeline  workflows (orchestration only)
 *   i2v-submit    paid submissions, rate-limited across all workers (maxTaskQueueActivitiesPerSecond)
 *   i2v-provider  status checks
 *   i2v-media     CPU-heavy image preparation and thumbnails
 *   i2v-files     downloads, tasks.json and reports: must run where the run folder is (a shared folder, or a
 *                 host-specific queue name)
 * Activities get the provider client and its API key from this process's own configuration; nothing secret
 * travels through Temporal.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { bundleWorkflowCode, NativeConnection, Worker, type WorkflowBundle } from '@temporalio/worker';
import { createActivities } from './activities';
import { DEFAULTS, type ProviderConfig } from './config';
import { createProviderClient } from './provider/client';
import { CPU_SLOTS } from './media/cpuSlots';
import { ensureRuntime } from './temporal/runtime';
import type { ActivityQueues } from './workflows/types';

export const TASK_QUEUE = 'i2v-pipeline';

export const DEFAULT_ACTIVITY_QUEUES: ActivityQueues = { submit: 'i2v-submit', provider: 'i2v-provider', media: 'i2v-media', files: 'i2v-files' };

export type WorkerRole = 'workflows' | keyof ActivityQueues;
export const WORKER_ROLES: readonly WorkerRole[] = ['workflows', 'submit', 'provider', 'media', 'files'];

let bundle: Promise<WorkflowBundle> | undefined;

/** Written by `npm run build` (scripts/bundle-workflows.mjs) beside the compiled code. */
const PREBUILT_BUNDLE = path.join(__dirname, 'workflow-bundle.js');

/**
 * The workflow code, bundled: from dist/, the bundle made at build time; from the TypeScript sources (tests),
 * bundled once per process (it takes seconds and leaves memory behind, so tests and the CLI reuse it). A folder
 * path, not require.resolve, so it works from both.
 */
export function workflowBundle(): Promise<WorkflowBundle> {
  bundle ??= existsSync(PREBUILT_BUNDLE)
    ? readFile(PREBUILT_BUNDLE, 'utf8').then((code) => ({ code }))
    : bundleWorkflowCode({ workflowsPath: path.join(__dirname, 'workflows'), logger: quietLogger });
  return bundle;
}

export interface WorkerOptions {
  connection: NativeConnection;
  namespace: string;
  provider: ProviderConfig;
  /** Which kinds of work this process takes (default: all). */
  roles?: readonly WorkerRole[];
  /** Task queue names (default DEFAULT_ACTIVITY_QUEUES; `files` may be host-specific). */
  queues?: ActivityQueues;
  /** Paid submissions per second across every worker of the cluster (the server enforces it). */
  submitsPerSecond?: number;
}

/** The workers of one process, run and stopped together. */
export interface WorkerGroup {
  run(): Promise<void>;
  /** Stops polling; running activities finish (or are retried elsewhere). Safe to call more than once. */
  shutdown(): void;
}

export async function createWorker(opts: WorkerOptions): Promise<WorkerGroup> {
  ensureRuntime();
  // Each image is prepared once, so libvips' operation cache (up to 50 MB) would only hold memory; and one thread
  // per image, since cpuSlots.ts already runs one image per core.
  sharp.cache(false);
  sharp.concurrency(1);
  const activities = createActivities({
    provider: createProviderClient(opts.provider),
    secrets: [opts.provider.apiKey],
    maxVideoBytes: DEFAULTS.maxVideoBytes,
    smallThumbnailWidth: DEFAULTS.thumbnailSmallWidth,
    submitsPerSecond: opts.submitsPerSecond ?? DEFAULTS.submitsPerSecond,
  });
  const queues = opts.queues ?? DEFAULT_ACTIVITY_QUEUES;
  const roles = opts.roles ?? WORKER_ROLES;
  const base = { connection: opts.connection, namespace: opts.namespace };
  const workers: Worker[] = [];
  if (roles.includes('workflows')) {
    // Old episodes started without queue names run their activities here too.
    workers.push(await Worker.create({
      ...base, taskQueue: TASK_QUEUE, workflowBundle: await workflowBundle(), activities, maxConcurrentActivityTaskExecutions: 8,
      // An episode starts all its shots at once, and each new shot's first workflow task comes from the shared
      // (non-sticky) queue, which the SDK's defaults poll with only 2 of 10 pollers: 200 shots took 19 s to start.
      // With 10 of 20 they start in 5 s (npm run bench); later tasks of a cached shot still use the sticky queue.
      maxConcurrentWorkflowTaskPolls: 20,
      nonStickyToStickyPollRatio: 1,
    }));
  }
  const activityWorker = (taskQueue: string, extra: Partial<Parameters<typeof Worker.create>[0]>) =>
    Worker.create({ ...base, taskQueue, activities, enableNonLocalActivities: true, ...extra });
  if (roles.includes('submit')) {
    // The server's limiter (a token bucket) lets a second's worth of tokens burst on top of its rate, so it is
    // given half the limit: the provider then never sees more than the limit in any one second.
    const limit = opts.submitsPerSecond ?? DEFAULTS.submitsPerSecond;
    // Each submission streams its image (a 192 KiB chunk at a time) and mostly waits on the provider and the
    // journal's fsyncs; its image check takes one of the CPU slots. 16 at once let an episode's first submissions
    // go out together when its shots start (with 8, the first shots' later half waited for a slot: npm run bench).
    workers.push(await activityWorker(queues.submit, { maxConcurrentActivityTaskExecutions: 16, maxTaskQueueActivitiesPerSecond: limit / 2 }));
  }
  if (roles.includes('provider')) workers.push(await activityWorker(queues.provider, { maxConcurrentActivityTaskExecutions: 32 }));
  // The CPU-heavy part of media work is held to one job per core (cpuSlots.ts); around it, each activity mostly
  // waits on the server and the disk, so more of them run at once than there are cores.
  if (roles.includes('media')) workers.push(await activityWorker(queues.media, { maxConcurrentActivityTaskExecutions: 4 * CPU_SLOTS }));
  if (roles.includes('files')) workers.push(await activityWorker(queues.files, { maxConcurrentActivityTaskExecutions: 8 }));
  return {
    run: async () => {
      await Promise.all(workers.map((w) => w.run()));
    },
    shutdown: () => {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    },
  };
}

/** Stops a worker group if it is still running (it may already be draining after a signal or a fatal error). */
export function stopWorker(worker: WorkerGroup): void {
  worker.shutdown();
}

const noop = (): void => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: (msg: string) => console.error(msg), log: noop };
