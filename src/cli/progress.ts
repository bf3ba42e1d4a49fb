/**
 * Live progress for `run`: on a terminal, one line per episode rewritten in place; elsewhere (CI, logs),
 * plain timestamped lines, printed only when something changed and at most every few seconds.
 */
import type { EpisodeProgress, EpisodeResult } from '../workflows/types';

export interface ProgressPrinter {
  update(name: string, progress: EpisodeProgress): void;
  done(): void;
}

export function createProgressPrinter(out: NodeJS.WriteStream = process.stdout, now: () => number = Date.now): ProgressPrinter {
  const started = now();
  const latest = new Map<string, string>();
  const lastPrinted = new Map<string, string>();
  let lastPlainAt = 0;
  let drawn = 0;
  const tty = out.isTTY === true;

  const render = (): void => {
    if (tty) {
      if (drawn > 0) out.write(`\x1b[${drawn}A`);
      for (const line of latest.values()) out.write(`\x1b[2K${line}\n`);
      drawn = latest.size;
      return;
    }
    const t = now();
    const changed = [...latest].filter(([name, line]) => lastPrinted.get(name) !== line);
    if (changed.length === 0 || t - lastPlainAt < 5000) return;
    lastPlainAt = t;
    const stamp = new Date(t).toISOString().slice(11, 19);
    for (const [name, line] of changed) {
      out.write(`[${stamp}] ${line}\n`);
      lastPrinted.set(name, line);
    }
  };

  return {
    update(name, progress) {
      latest.set(name, formatProgressLine(name, progress, now() - started));
      render();
    },
    done() {
      lastPlainAt = 0;
      render();
    },
  };
}

export function formatProgressLine(name: string, p: EpisodeProgress, elapsedMs: number): string {
  const width = 20;
  const filled = p.total ? Math.round(((p.counts.done + p.counts.failed) / p.total) * width) : width;
  const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
  const active = p.counts.preparing + p.counts.submitting + p.counts.generating + p.counts.downloading;
  return `${name} [${bar}] ${p.counts.done}/${p.total} done, ${active} working, ${p.counts.queued} queued, ${p.counts.failed} failed · ${formatDuration(elapsedMs)}`;
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
