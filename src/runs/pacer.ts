/**
 * Paces paid submissions of one run to at most `perSecond` in any one-second window, across every worker that
 * shares the run folder (the same reach as the submission journal). The Temporal server's task-queue rate limit
 * spans all runs but lets short bursts through; this makes the per-second promise exact.
 *
 * The provider counts requests when they arrive, a moment after the slot is taken. A slot is therefore good for
 * SLOT_HOLD_MS only (the caller takes a fresh one if its POST could not go out by then), and slots are spaced over
 * a window that much longer than a second, so no calendar second at the provider sees more than the rate.
 */
import { readJsonIfExists, writeFileAtomic } from '../atomic';
import { withFileLock } from './lock';
import { journalDir } from './paths';
import path from 'node:path';

/** How long after its slot a submission may still be sent. */
export const SLOT_HOLD_MS = 200;
const WINDOW_MS = 1000 + SLOT_HOLD_MS;

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
