/**
 * Removes what a crashed process leaves behind in a run's output folder: temporary files of atomic writes,
 * partial downloads and lock folders. Only what is certainly abandoned goes: its owner process is gone (on this
 * host), or it has not been touched for longer than any live writer would leave it.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const TMP = /^\..+\.(\d+)\.[0-9a-f]+\.tmp$/;
/** Live writers touch these continuously (data, or the lock's own heartbeat); older means abandoned. */
const IDLE_MS = { tmp: 60_000, part: 120_000, lock: 30_000 };
/** A file whose owner is gone may still be mid-rename by a writer on another host sharing the folder. */
const GRACE_MS = 5_000;

export async function sweepLeftovers(dir: string, now = Date.now()): Promise<string[]> {
  const removed: string[] = [];
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return removed;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    const age = await ageOf(full, now);
    if (age === undefined) continue;
    let abandoned = false;
    if (entry.isDirectory() && entry.name.endsWith('.lock')) {
      const owner = await readOwner(full);
      abandoned = age > IDLE_MS.lock || (age > GRACE_MS && owner?.hostname === os.hostname() && !alive(owner.pid));
    } else if (entry.isDirectory()) {
      removed.push(...(await sweepLeftovers(full, now)));
      continue;
    } else if (entry.name.endsWith('.part')) {
      abandoned = age > IDLE_MS.part;
    } else {
      const tmp = TMP.exec(entry.name);
      abandoned = !!tmp && (age > IDLE_MS.tmp || (age > GRACE_MS && !alive(Number(tmp[1]))));
    }
    if (abandoned) {
      await fs.rm(full, { recursive: true, force: true });
      removed.push(full);
    }
  }
  return removed;
}

async function ageOf(p: string, now: number): Promise<number | undefined> {
  try {
    return now - (await fs.stat(p)).mtimeMs;
  } catch {
    return undefined;
  }
}

async function readOwner(lockDir: string): Promise<{ pid: number; hostname: string } | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(lockDir, 'owner.json'), 'utf8')) as { pid: number; hostname: string };
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
