/**
 * CPU-heavy media work (decoding and encoding images, ffmpeg) runs at most one job per core in a process (and no
 * more than four, since a large image takes hundreds of MB while decoded). Activities around that work spend
 * most of their time waiting on the server, the disk or the network, so more of them run at once than this.
 */
import os from 'node:os';

export const CPU_SLOTS = Math.max(1, Math.min(4, os.availableParallelism()));

let active = 0;
const waiting: Array<() => void> = [];

export async function withCpuSlot<T>(fn: () => Promise<T>): Promise<T> {
  while (active >= CPU_SLOTS) await new Promise<void>((resolve) => waiting.push(resolve));
  active++;
  try {
    return await fn();
  } finally {
    active--;
    waiting.shift()?.();
  }
}
