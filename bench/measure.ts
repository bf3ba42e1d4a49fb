/**
 * What the benchmark measures from outside the pipelines: the emulator's request log (status checks per task,
 * when each video download started), task end times as the provider reports them, process peak memory and
 * CPU from /proc, and percentiles.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Per task: status checks, and when the first video download began (ms since the epoch). */
export interface TaskRequests {
  polls: number;
  downloadStartedAt?: number;
  downloadMs?: number;
}

/**
 * Reads the emulator's one-line-per-request log (`GET /api/v1/tasks/<id> 200 3ms`, logged when the response is
 * finished), so a request's start is the log time minus its duration.
 */
export class RequestLog {
  readonly tasks = new Map<string, TaskRequests>();
  private recording = true;

  readonly log = (line: string): void => {
    if (!this.recording) return;
    const m = /^(GET|HEAD|POST) (\S+) (\d{3}) (\d+)ms$/.exec(line);
    if (!m) return;
    const [, method, pathname, , ms] = m as unknown as [string, string, string, string, string];
    const now = Date.now();
    const poll = /\/tasks\/([^/]+)$/.exec(pathname);
    if (method === 'GET' && poll?.[1]) {
      this.entry(poll[1]).polls++;
      return;
    }
    const video = /^\/videos\/([^/]+)\.mp4$/.exec(pathname);
    if (method === 'GET' && video?.[1]) {
      const entry = this.entry(video[1]);
      const startedAt = now - Number(ms);
      if (entry.downloadStartedAt === undefined || startedAt < entry.downloadStartedAt) {
        entry.downloadStartedAt = startedAt;
        entry.downloadMs = Number(ms);
      }
    }
  };

  /** Requests after this (the benchmark's own look-ups) are not counted. */
  stop(): void {
    this.recording = false;
  }

  private entry(taskId: string): TaskRequests {
    let e = this.tasks.get(taskId);
    if (!e) this.tasks.set(taskId, (e = { polls: 0 }));
    return e;
  }
}

/** The provider's `end_time` ("YYYY-MM-DD HH:MM:SS.mmm", Beijing time without a zone) as ms since the epoch. */
export function parseProviderTime(text: string): number {
  return Date.parse(`${text.replace(' ', 'T')}+08:00`);
}

export interface ProcessUsage {
  /** Peak resident set (VmHWM), MB. */
  peakRssMb: number;
  /** User + system CPU of the process itself, seconds. */
  cpuSeconds: number;
  /** CPU of its finished children (ffmpeg, ffprobe), seconds. */
  childCpuSeconds: number;
  /** Peak RSS of its child processes by command name (`node` is the report process), MB, where sampled. */
  childPeakRssMb?: Record<string, number>;
}

/** From /proc/<pid>/status and /proc/<pid>/stat (Linux), while the process is alive. */
export function processUsage(pid: number | 'self'): ProcessUsage {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const hwmKb = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at field 3; utime is field 14.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  const tick = 100; // USER_HZ on Linux
  const at = (field: number) => fields[field - 3] ?? NaN;
  return {
    peakRssMb: round(hwmKb / 1024, 1),
    cpuSeconds: round((at(14) + at(15)) / tick, 2),
    childCpuSeconds: round((at(16) + at(17)) / tick, 2),
  };
}

/**
 * Samples the peak memory of a process's direct children (ffmpeg, ffprobe, the report process) every `everyMs`
 * until stopped: MB by command name. Short-lived children can slip between samples; a report process lives seconds.
 */
export function sampleChildPeaks(pid: number, everyMs = 200): { stop(): Record<string, number> } {
  const peaks: Record<string, number> = {};
  const sample = (): void => {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        // The parent's pid is the second field after the command name (which may contain spaces).
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== pid) continue;
        const status = readFileSync(`/proc/${entry}/status`, 'utf8');
        const name = /^Name:\s+(.+)$/m.exec(status)?.[1] ?? '?';
        const mb = round(Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) / 1024, 1);
        peaks[name] = Math.max(peaks[name] ?? 0, mb);
      } catch {
        // gone meanwhile
      }
    }
  };
  const timer = setInterval(sample, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      return peaks;
    },
  };
}

/** A process whose command line contains `text` (e.g. the Temporal server started on a given state dir). */
export function findProcess(text: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').includes(text)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

export interface Distribution {
  p50: number;
  p95: number;
  max: number;
  mean: number;
}

export function distribution(values: readonly number[], digits = 3): Distribution {
  if (values.length === 0) return { p50: NaN, p95: NaN, max: NaN, mean: NaN };
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50: round(quantile(sorted, 0.5), digits),
    p95: round(quantile(sorted, 0.95), digits),
    max: round(sorted[sorted.length - 1] ?? NaN, digits),
    mean: round(sorted.reduce((s, v) => s + v, 0) / sorted.length, digits),
  };
}

/** Linear interpolation between closest ranks. */
function quantile(sorted: readonly number[], p: number): number {
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos);
  const a = sorted[lo] ?? NaN;
  const b = sorted[Math.min(sorted.length - 1, lo + 1)] ?? a;
  return a + (b - a) * (pos - lo);
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
