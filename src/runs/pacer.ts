/**
 * Paces paid submissions of one run to at most `perSecond` in any one-second window, across every worker that
 * shares the run folder (the same reach as the submission journal). The Temporal server's task-queue rate limit
 * spans all runs but lets short bursts through; this makes the per-second promise exact.
 *
 * The provider counts requests when they arrive, a moment after the slot is taken. A slot is therefore good for
 * SLOT_HOLD_MS only (the caller takes a fresh one if its POST could not go out by then), and slots are spaced over
 * a window that much longer than a second, so no calendar second at the provider sees more than the rate.
 *
 * The slots taken are kept in a file under the run folder's lock. Everyone in this process who asks while a turn
 * is under way is served by the next turn together, one lock and one write for all of them: an episode starts
 * its shots all at once, and one turn per submission made them queue behind each other's file work.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { replaceFile } from '../atomic';
import { inLockedBatch } from './lock';
import { journalDir } from './paths';

/** How long after its slot a submission may still be sent. */
export const SLOT_HOLD_MS = 200;
const WINDOW_MS = 1000 + SLOT_HOLD_MS;

/** Waits until a submission may start now without exceeding the rate, and records it; resolves to that time. */
export async function awaitSubmitSlot(runDir: string, perSecond: number, now: () => number = Date.now): Promise<number> {
  const file = path.join(journalDir(runDir), 'submit-pacer.json');
  for (;;) {
    const slot = await nextTurn(file, perSecond, now);
    if (slot.waitMs <= 0) return slot.at;
    await new Promise((r) => setTimeout(r, slot.waitMs));
  }
}

interface Slot {
  at: number;
  /** 0: the slot is taken. Otherwise how long to wait before asking again. */
  waitMs: number;
}

/** A slot, or how long to wait: decided in one turn under the lock with everyone else asking at the same time. */
function nextTurn(file: string, perSecond: number, now: () => number): Promise<Slot> {
  return inLockedBatch(file, { perSecond, now }, async (asks) => {
    const t = asks[0]!.now();
    const taken = (await readSlots(file)).filter((at) => t - at < WINDOW_MS);
    const granted = asks.map((ask): Slot => {
      if (taken.length < ask.perSecond) {
        taken.push(t);
        return { at: t, waitMs: 0 };
      }
      return { at: t, waitMs: Math.min(...taken) + WINDOW_MS - t + 1 };
    });
    if (granted.some((slot) => slot.waitMs === 0)) await replaceFile(file, JSON.stringify(taken));
    return granted.map((value) => ({ status: 'fulfilled', value }));
  });
}

/**
 * The slots taken so far. The file is replaced without fsync (it only matters for the next second), so after a
 * power cut it may be empty or unreadable: then no slot is known taken, which is true by the time anyone asks.
 */
async function readSlots(file: string): Promise<number[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  try {
    const slots: unknown = JSON.parse(text);
    return Array.isArray(slots) ? slots.filter((at): at is number => typeof at === 'number') : [];
  } catch {
    return [];
  }
}
