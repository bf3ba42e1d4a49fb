/**
 * Deterministic [0, 1) numbers from a 32-bit seed (mulberry32), for the emulator's `random` option and anything
 * that should draw the same values run after run (fault schedules, benchmark latencies).
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
