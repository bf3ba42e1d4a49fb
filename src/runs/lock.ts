/**
 * Mutual exclusion for read-modify-write of shared files (tasks.json, journal entries), between async
 * callers in one process and between processes (several workers may share a run folder).
 *
 * Across processes the lock is a directory `<target>.lock` created with an exclusive mkdir (atomic on local
 * filesystems and NFS). The holder writes `owner.json` (pid, host, token) inside for humans and refreshes the
 * directory's mtime while it holds the lock; a lock whose mtime is older than `staleMs` belongs to a dead
 * process and is taken over. Within a process, callers queue on a promise chain per path so they wait
 * without polling the filesystem.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface LockOptions {
  /** A lock not refreshed for this long is considered abandoned. */
  staleMs?: number;
  /** Give up waiting after this long. */
  timeoutMs?: number;
}

const DEFAULT_STALE_MS = 30_000;
const DEFAULT_TIMEOUT_MS = 120_000;

const queues = new Map<string, Promise<void>>();

interface BatchItem {
  item: unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** Per target: the items waiting for the next batch (the batch under way closed when it took the lock). */
const nextBatches = new Map<string, BatchItem[]>();

/**
 * Runs `work` under the lock on `target` for `item` together with every other item given for the same target
 * while an earlier batch waited for the lock or held it: one lock and one read-modify-write for all of them, where
 * callers arriving at once (an episode starting its shots) would otherwise queue behind each other's file work.
 * `work` settles each item in the order given; an error it throws rejects every item of the batch.
 */
export function inLockedBatch<I, R>(target: string, item: I, work: (items: I[]) => Promise<Array<PromiseSettledResult<R>>>): Promise<R> {
  const key = path.resolve(target);
  return new Promise<R>((resolve, reject) => {
    const entry: BatchItem = { item, resolve: resolve as (value: unknown) => void, reject };
    const waiting = nextBatches.get(key);
    if (waiting) {
      waiting.push(entry);
      return;
    }
    const batch = [entry];
    nextBatches.set(key, batch);
    void runBatch(key, batch, work as (items: unknown[]) => Promise<Array<PromiseSettledResult<unknown>>>);
  });
}

async function runBatch(key: string, batch: BatchItem[], work: (items: unknown[]) => Promise<Array<PromiseSettledResult<unknown>>>): Promise<void> {
  let results: Array<PromiseSettledResult<unknown>>;
  try {
    results = await withFileLock(key, () => {
      // From here on, new items start the next batch (which waits for this one's lock).
      nextBatches.delete(key);
      return work(batch.map((b) => b.item));
    });
  } catch (err) {
    if (nextBatches.get(key) === batch) nextBatches.delete(key);
    for (const b of batch) b.reject(err);
    return;
  }
  batch.forEach((b, i) => {
    const result = results[i]!;
    if (result.status === 'fulfilled') b.resolve(result.value);
    else b.reject(result.reason);
  });
}

/** Runs `fn` while holding the lock on `target` (the file being protected; it need not exist). */
export async function withFileLock<T>(target: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const key = path.resolve(target);
  const previous = queues.get(key) ?? Promise.resolve();
  let done!: () => void;
  const turn = new Promise<void>((resolve) => (done = resolve));
  const tail = previous.then(() => turn);
  queues.set(key, tail);
  await previous;
  try {
    const release = await acquireDirLock(key, opts);
    try {
      return await fn();
    } finally {
      await release();
    }
  } finally {
    done();
    if (queues.get(key) === tail) queues.delete(key);
  }
}

interface LockOwner {
  pid: number;
  hostname: string;
  token: string;
  acquiredAt: string;
}

/**
 * The cross-process half of withFileLock, without the in-process queue (exported for tests, which use two
 * independent acquirers to stand in for two processes). Resolves to the release function.
 */
export async function acquireDirLock(target: string, opts: LockOptions = {}): Promise<() => Promise<void>> {
  const lockDir = `${path.resolve(target)}.lock`;
  const staleMs = opts.staleMs ?? DEFAULT_STALE_MS;
  const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const owner: LockOwner = { pid: process.pid, hostname: os.hostname(), token: randomBytes(8).toString('hex'), acquiredAt: '' };
  await fs.mkdir(path.dirname(lockDir), { recursive: true });

  for (;;) {
    try {
      await fs.mkdir(lockDir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (await removeIfStale(lockDir, staleMs)) continue;
    if (Date.now() > deadline) {
      const holder = await readOwner(lockDir);
      const who = holder ? `pid ${holder.pid} on ${holder.hostname} since ${holder.acquiredAt}` : 'an unknown process';
      throw new Error(`Timed out waiting for the lock ${lockDir}, held by ${who}. If no i2v process is running, delete that folder.`);
    }
    await sleep(20 + Math.random() * 30);
  }

  owner.acquiredAt = new Date().toISOString();
  try {
    await fs.writeFile(path.join(lockDir, 'owner.json'), JSON.stringify(owner));
  } catch (err) {
    await fs.rm(lockDir, { recursive: true, force: true });
    throw err;
  }
  const heartbeat = setInterval(() => {
    const now = new Date();
    fs.utimes(lockDir, now, now).catch(() => undefined);
  }, Math.max(10, Math.floor(staleMs / 3)));
  heartbeat.unref();

  return async () => {
    clearInterval(heartbeat);
    // Only remove the lock if it is still ours (it may have been taken over had we stalled past staleMs).
    const current = await readOwner(lockDir);
    if (current?.token === owner.token) await fs.rm(lockDir, { recursive: true, force: true });
  };
}

/** True when the lock vanished or was abandoned and has been removed, so acquiring should be retried now. */
async function removeIfStale(lockDir: string, staleMs: number): Promise<boolean> {
  let mtimeMs: number;
  try {
    mtimeMs = (await fs.stat(lockDir)).mtimeMs;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
  if (Date.now() - mtimeMs <= staleMs) return false;
  // Not atomic with the stat: two waiters judging the same dead lock stale in the same instant could let the
  // slower one remove the lock the faster one has just taken. That needs a holder dead for staleMs and two
  // waiters microseconds apart; the token check on release stops the damage spreading further.
  await fs.rm(lockDir, { recursive: true, force: true });
  return true;
}

async function readOwner(lockDir: string): Promise<LockOwner | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(lockDir, 'owner.json'), 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
