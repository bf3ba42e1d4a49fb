/**
 * Paces paid submissions of one run to at most `perSecond` in any one-second window, across every worker that
 * shares the run folder (the same reach as the submission journal). The Temporal server's task-queue rate limit
 * spans all runs but lets short bursts through; this makes the per-second promise exact.
 */
import { readJsonIfExists, writeFileAtomic } from '../atomic';
import { withFileLock } from './lock';
import { journalDir } from './paths';
import path from 'node:path';

const WINDOW_MS = 1000;

/** Waits until a submission may start now without exceeding the rate, and records it; resolves to that time. */
export async function awaitSubmitSlot(runDir: string, perSecond: number, now: () => number = Date.now): Promise<number> {
  const file = path.join(journalDir(runDir), 'submit-pacer.json');
  for (;;) {
    const slot = await withFileLock(file, async () => {
      const t = now();
      const recent = ((await readJsonIfExists<number[]>(file)) ?? []).filter((at) => t - at < WINDOW_MS);
      if (recent.length < perSecond) {
        await writeFileAtomic(file, JSON.stringify([...recent, t]));
        return { at: t, waitMs: 0 };
      }
      return { at: t, waitMs: Math.min(...recent) + WINDOW_MS - t + 1 };
    });
    if (slot.waitMs <= 0) return slot.at;
    await new Promise((r) => setTimeout(r, slot.waitMs));
  }
}
