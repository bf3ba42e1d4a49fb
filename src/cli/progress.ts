/**
 * Live progress for `run`: on a terminal, a bar per episode (cli-progress) with counts by state, elapsed time,
 * ETA and spend; elsewhere (CI, logs), plain timestamped lines, printed when something finishes or fails and
 * otherwise at most every 30 s. New failures are announced with their one-line reason either way.
 */
import { MultiBar, type SingleBar } from 'cli-progress';
import { formatMoney, roundMoney } from '../pricing';
import type { EpisodeProgress, EpisodeResult, ShotProgress } from '../workflows/types';

/** Failures the user must act on (edit a prompt, check the provider console) rather than simply re-run. */
const NEEDS_ATTENTION = new Set(['SUBMIT_UNCERTAIN', 'DataInspectionFailed', 'DeadlineExceeded']);

export interface EpisodeCounts {
  total: number;
  queued: number;
  submitting: number;
  generating: number;
  downloading: number;
  done: number;
  failed: number;
  attention: number;
}

export function countsOf(p: EpisodeProgress): EpisodeCounts {
  const attention = p.shots.filter((s) => s.phase === 'failed' && NEEDS_ATTENTION.has(s.errorCode ?? '')).length;
  return {
    total: p.total,
    queued: p.counts.queued,
    submitting: p.counts.preparing + p.counts.submitting,
    generating: p.counts.generating,
    downloading: p.counts.downloading,
    done: p.counts.done,
    failed: p.counts.failed - attention,
    attention,
  };
}

export interface ProgressPrinter {
  update(name: string, progress: EpisodeProgress): void;
  done(): void;
}

export interface PrinterOptions {
  now?: () => number;
  /** List price of one shot, for "spent so far". */
  costPerShot?: { amount: number; currency: string };
  /** Plain-line mode: the longest silence while work is going on. */
  heartbeatMs?: number;
}

interface Tracked {
  first: EpisodeCounts;
  latest: EpisodeCounts;
  failuresSeen: Set<string>;
  bar?: SingleBar;
  /** Plain-line mode: shots finished when the last line was printed. */
  lastFinished?: number;
  lastPrintedAt: number;
}

export function createProgressPrinter(out: NodeJS.WriteStream = process.stdout, opts: PrinterOptions = {}): ProgressPrinter {
  const now = opts.now ?? Date.now;
  const started = now();
  const heartbeatMs = opts.heartbeatMs ?? 30_000;
  const tracked = new Map<string, Tracked>();
  const multibar = out.isTTY
    ? new MultiBar({ stream: out, format: '{name} [{bar}] {value}/{total} {details}', barsize: 24, hideCursor: true, clearOnComplete: false, autopadding: true }, undefined)
    : undefined;

  const describe = (t: Tracked): string => {
    const c = t.latest;
    const elapsed = now() - started;
    const finishedHere = c.done + c.failed + c.attention - (t.first.done + t.first.failed + t.first.attention);
    const remaining = c.total - c.done - c.failed - c.attention;
    const eta = finishedHere > 0 && remaining > 0 ? ` · ETA ${formatDuration((elapsed / finishedHere) * remaining)}` : '';
    const spent = opts.costPerShot ? ` · spent ${formatMoney(roundMoney(opts.costPerShot.amount * Math.max(0, c.done - t.first.done)), opts.costPerShot.currency)}` : '';
    return (
      `done · ${c.queued} queued, ${c.submitting} submitting, ${c.generating} generating, ${c.downloading} downloading, ` +
      `${c.failed} failed, ${c.attention} need attention · ${formatDuration(elapsed)}${eta}${spent}`
    );
  };

  const announceFailures = (name: string, t: Tracked, shots: ShotProgress[]): void => {
    for (const s of shots) {
      const id = `${s.key}#${s.take}`;
      if (s.phase !== 'failed' || t.failuresSeen.has(id)) continue;
      t.failuresSeen.add(id);
      const line = `✗ ${s.key} take ${s.take}: [${s.errorCode ?? 'error'}] ${s.error ?? ''}`.trimEnd();
      if (multibar) multibar.log(`${line}\n`);
      else out.write(`[${clock(now())}] ${name} ${line}\n`);
    }
  };

  const printPlain = (name: string, t: Tracked, force: boolean): void => {
    const c = t.latest;
    const finished = c.done + c.failed + c.attention;
    const active = c.total - finished > 0;
    if (force || finished !== t.lastFinished || (active && now() - t.lastPrintedAt >= heartbeatMs)) {
      out.write(`[${clock(now())}] ${name} ${c.done}/${c.total} ${describe(t)}\n`);
      t.lastFinished = finished;
      t.lastPrintedAt = now();
    }
  };

  return {
    update(name, progress) {
      const counts = countsOf(progress);
      let t = tracked.get(name);
      if (!t) {
        t = { first: counts, latest: counts, failuresSeen: new Set(), lastPrintedAt: 0 };
        // Failures from before this run were reported then; announce only new ones.
        for (const s of progress.shots) if (s.phase === 'failed') t.failuresSeen.add(`${s.key}#${s.take}`);
        tracked.set(name, t);
        if (multibar) t.bar = multibar.create(counts.total, counts.done, { name, details: '' });
      }
      t.latest = counts;
      announceFailures(name, t, progress.shots);
      if (t.bar) t.bar.update(counts.done, { name, details: describe(t) });
      else printPlain(name, t, false);
    },
    done() {
      if (multibar) multibar.stop();
      else for (const [name, t] of tracked) if (t.lastFinished !== t.latest.done + t.latest.failed + t.latest.attention) printPlain(name, t, true);
    },
  };
}

/** One line for `status`: the same counts as the live view. */
export function formatProgressLine(name: string, p: EpisodeProgress, elapsedMs: number): string {
  const c = countsOf(p);
  return `${name} ${c.done}/${c.total} done · ${c.queued} queued, ${c.submitting} submitting, ${c.generating} generating, ${c.downloading} downloading, ${c.failed} failed, ${c.attention} need attention · ${formatDuration(elapsedMs)}`;
}

export function formatSummary(name: string, r: EpisodeResult): string[] {
  const skipped = r.shots.filter((s) => s.skipped).length;
  const lines = [`${name}: ${r.succeeded}/${r.total} videos ready${skipped ? ` (${skipped} already done before)` : ''}, ${r.failed} failed`];
  for (const s of r.shots.filter((x) => x.status === 'FAILED')) {
    lines.push(`  ✗ ${s.key} take ${s.take}: [${s.errorCode ?? 'error'}] ${s.errorMessage ?? ''}`.trimEnd());
  }
  return lines;
}

export function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  return h ? `${h}:${two(m)}:${two(sec)}` : `${two(m)}:${two(sec)}`;
}

function clock(t: number): string {
  return new Date(t).toISOString().slice(11, 19);
}
