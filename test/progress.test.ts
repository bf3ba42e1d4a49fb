/** What `run` prints while it works: plain lines off a terminal, at a sane rate, with every failure announced once. */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createProgressPrinter, countsOf } from '../src/cli/progress';
import type { EpisodeProgress, ShotPhase, ShotProgress } from '../src/workflows/types';

function progress(phases: ShotPhase[], failures: Record<number, string> = {}): EpisodeProgress {
  const shots: ShotProgress[] = phases.map((phase, i) => ({
    key: `Episode-01-${String(i + 1).padStart(3, '0')}`, shot: i + 1, take: 1, phase,
    ...(failures[i + 1] ? { errorCode: failures[i + 1], error: `reason ${failures[i + 1]}` } : {}),
  }));
  const counts = { queued: 0, preparing: 0, submitting: 0, generating: 0, downloading: 0, done: 0, failed: 0 } as Record<ShotPhase, number>;
  for (const p of phases) counts[p]++;
  return { episode: 1, total: phases.length, counts, shots };
}

function capture() {
  const lines: string[] = [];
  const out = new Writable({ write: (chunk, _enc, done) => { lines.push(...String(chunk).split('\n').filter(Boolean)); done(); } }) as unknown as NodeJS.WriteStream;
  return { out, lines };
}

describe('progress on a non-terminal', () => {
  it('prints when shots finish or fail, a heartbeat at most every 30 s otherwise, and each failure once', () => {
    let t = 0;
    const { out, lines } = capture();
    const printer = createProgressPrinter(out, { now: () => t, costPerShot: { amount: 1, currency: 'CNY' } });
    const running = progress(['generating', 'generating', 'queued']);
    for (t = 0; t < 120_000; t += 1000) printer.update('Episode-01', running); // 2 minutes with nothing finishing
    expect(lines.length).toBe(4); // the first line, then one every 30 s (at 30, 60 and 90 s)
    t = 121_000;
    printer.update('Episode-01', progress(['done', 'generating', 'generating']));
    t = 122_000;
    printer.update('Episode-01', progress(['done', 'failed', 'generating'], { 2: 'DataInspectionFailed' }));
    printer.update('Episode-01', progress(['done', 'failed', 'generating'], { 2: 'DataInspectionFailed' }));
    printer.done();
    const tail = lines.slice(4);
    expect(tail[0]).toMatch(/^\[00:02:01\] Episode-01 1\/3 done · 0 queued, 0 submitting, 2 generating, 0 downloading, 0 failed, 0 need attention · 02:01 · ETA 04:02 · spent ¥1\.00$/);
    expect(tail.filter((l) => l.includes('✗ Episode-01-002 take 1: [DataInspectionFailed] reason DataInspectionFailed'))).toHaveLength(1);
    expect(tail.at(-1)).toMatch(/1\/3 done .* 1 need attention/);
  });

  it('counts failures the user must act on apart from ordinary ones', () => {
    const c = countsOf(progress(['failed', 'failed', 'done'], { 1: 'SUBMIT_UNCERTAIN', 2: 'InternalError' }));
    expect(c).toMatchObject({ done: 1, failed: 1, attention: 1 });
  });
});
