/** The bench's output: the table, where the time goes, the poll model, and each target of issue 6 checked. */
import { round, type Distribution } from './measure';
import type { RunMetrics } from './pipelines';
import type { ScheduleOutcome } from './pollModel';

export interface Target {
  target: string;
  met: boolean;
  evidence: string;
}


/** One repetition of the default scenario: both pipelines on the same seed, so the same generation times. */
export interface DefaultPair {
  ours: RunMetrics;
  naive: RunMetrics;
}

/**
 * Issue 6's targets. With repetitions of the default scenario, its targets are judged on the medians (the
 * spread between runs on one machine exceeds some targets' margins), and the evidence gives each range and in
 * how many repetitions ours met the target on its own.
 */
export function checkTargets(runs: RunMetrics[], pairs: DefaultPair[]): Target[] {
  const targets: Target[] = [];
  if (pairs.length) {
    const ours = (f: (r: RunMetrics) => number) => spread(pairs.map((p) => f(p.ours)));
    const naive = (f: (r: RunMetrics) => number) => spread(pairs.map((p) => f(p.naive)));
    const wins = (ok: (p: DefaultPair) => boolean) => (pairs.length > 1 ? `; met in ${pairs.filter(ok).length} of ${pairs.length} repetitions` : '');
    const makespan = (r: RunMetrics) => r.makespanSeconds;
    const ratio = (r: RunMetrics) => r.makespanOverIdeal;
    const polls = (r: RunMetrics) => r.pollsPerTask.mean;
    const lagP95 = (r: RunMetrics) => r.detectionLagSeconds.p95;
    targets.push({
      target: 'makespan within 1.10× the ideal', met: ours(ratio).median <= 1.1,
      evidence: pairs.length === 1
        ? `${pairs[0]!.ours.makespanSeconds} s / ${pairs[0]!.ours.idealSeconds} s = ${pairs[0]!.ours.makespanOverIdeal}×`
        : `${describeSpread(ours(ratio), '×')}${wins((p) => p.ours.makespanOverIdeal <= 1.1)}`,
    });
    targets.push({
      target: 'makespan no worse than the naive baseline', met: ours(makespan).median <= naive(makespan).median,
      evidence: `${describeSpread(ours(makespan), ' s')} vs ${describeSpread(naive(makespan), ' s')}${wins((p) => p.ours.makespanSeconds <= p.naive.makespanSeconds)}`,
    });
    targets.push({
      target: 'polls per task at most half the baseline\'s', met: ours(polls).median <= naive(polls).median / 2,
      evidence: `${describeSpread(ours(polls))} vs ${describeSpread(naive(polls))} (${round(ours(polls).median / naive(polls).median, 2)}×)${wins((p) => p.ours.pollsPerTask.mean <= p.naive.pollsPerTask.mean / 2)}`,
    });
    targets.push({
      target: 'detection lag p95 no worse than the baseline\'s', met: ours(lagP95).median <= naive(lagP95).median,
      evidence: `${describeSpread(ours(lagP95), ' s')} vs ${describeSpread(naive(lagP95), ' s')}${wins((p) => p.ours.detectionLagSeconds.p95 <= p.naive.detectionLagSeconds.p95)}`,
    });
  }
  const scale = runs.find((r) => r.scenario === 'scale');
  if (scale?.history) {
    const perRun = Math.max(...scale.history.episodeEventsPerRun);
    targets.push({ target: `${scale.shots} shots complete`, met: scale.succeeded === scale.shots, evidence: `${scale.succeeded} succeeded, ${scale.failed} failed` });
    targets.push({ target: 'worker peak RSS under 400 MB', met: scale.process.peakRssMb < 400, evidence: `${scale.process.peakRssMb} MB (${settingsText(scale.workerMemorySettings)})` });
    targets.push({ target: 'no shot workflow over 200 history events', met: scale.history.shotEvents.max <= 200, evidence: `max ${scale.history.shotEvents.max}` });
    targets.push({
      target: 'episode workflow under 10,000 events per run', met: perRun < 10_000,
      evidence: `${scale.history.episodeRuns} run(s): ${scale.history.episodeEventsPerRun.join(' + ')} events`,
    });
  }
  const [small, large] = runs.filter((r) => r.scenario === 'payload');
  if (small?.history && large?.history) {
    const a = small.history.shotPayloadBytes.p50;
    const b = large.history.shotPayloadBytes.p50;
    const diff = Math.abs(b - a) / a;
    targets.push({
      target: 'payload bytes in history per shot do not grow with image size (within 5 %)', met: diff <= 0.05,
      evidence: `p50 ${a} B (${formatBytes(small.inputImageBytesP50)} images) vs ${b} B (${formatBytes(large.inputImageBytesP50)} images), both prepared before sending: ${round(diff * 100, 2)} %; `
        + `whole history p50 ${small.history.shotBytes.p50} B vs ${large.history.shotBytes.p50} B, events p50 ${small.history.shotEvents.p50} vs ${large.history.shotEvents.p50}`,
    });
  }
  return targets;
}

interface Spread {
  median: number;
  min: number;
  max: number;
  count: number;
}

function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median: round(median, 3), min: sorted[0]!, max: sorted[sorted.length - 1]!, count: sorted.length };
}

/** "4.1 s" for one value, "median 4.1 s (3.9–4.8)" for several. */
function describeSpread(s: Spread, unit = ''): string {
  return s.count === 1 ? `${s.median}${unit}` : `median ${s.median}${unit} (${s.min}–${s.max})`;
}

/** The default scenario's key figures, one line per repetition, with the medians. */
export function formatRepetitions(pairs: DefaultPair[]): string {
  const cells = (p: DefaultPair) => [
    `${p.ours.makespanSeconds} / ${p.naive.makespanSeconds}`,
    `${p.ours.lastReadySeconds} / ${p.naive.lastReadySeconds}`,
    `${p.ours.submitSeconds.last} / ${p.naive.submitSeconds.last}`,
    `${p.ours.detectionLagSeconds.p95} / ${p.naive.detectionLagSeconds.p95}`,
    `${p.ours.pollsPerTask.mean} / ${p.naive.pollsPerTask.mean}`,
  ];
  const median = (f: (r: RunMetrics) => number) => `${spread(pairs.map((p) => f(p.ours))).median} / ${spread(pairs.map((p) => f(p.naive))).median}`;
  const rows = [
    ['repetition', 'makespan s', 'last ready s', 'last submission s', 'lag p95 s', 'polls per task'],
    ...pairs.map((p, i) => [String(i + 1), ...cells(p)]),
    ['median', median((r) => r.makespanSeconds), median((r) => r.lastReadySeconds), median((r) => r.submitSeconds.last), median((r) => r.detectionLagSeconds.p95), median((r) => r.pollsPerTask.mean)],
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return [
    `Default scenario, ${pairs.length} repetitions (ours / naive, same generation times in each):`,
    ...rows.map((row) => `  ${row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ')}`),
  ].join('\n');
}

export function formatTable(runs: RunMetrics[]): string {
  const d = (x: Distribution, unit = '') => `${x.p50}${unit} / ${x.p95}${unit}`;
  const rows: Array<[string, (r: RunMetrics) => string]> = [
    ['shots ok / failed', (r) => `${r.succeeded} / ${r.failed}`],
    ['max in flight', (r) => (r.maxInFlight === null ? 'all' : String(r.maxInFlight))],
    ['input image (p50)', (r) => formatBytes(r.inputImageBytesP50)],
    ['shot workflows started s (first – last)', (r) => (r.shotStartSeconds ? `${r.shotStartSeconds.first} – ${r.shotStartSeconds.last}` : '–')],
    ['submissions s (first – last)', (r) => `${r.submitSeconds.first} – ${r.submitSeconds.last}`],
    ['last task ready s', (r) => String(r.lastReadySeconds)],
    ['makespan s (all shots done)', (r) => String(r.makespanSeconds)],
    ['ideal s (last ready + its files)', (r) => String(r.idealSeconds)],
    ['makespan / ideal', (r) => `${r.makespanOverIdeal}×`],
    ['command s (incl. validation, reports)', (r) => String(r.commandSeconds)],
    ['detection lag s p50 / p95', (r) => d(r.detectionLagSeconds)],
    ['detection lag s max', (r) => String(r.detectionLagSeconds.max)],
    ['polls per task mean (p95)', (r) => `${r.pollsPerTask.mean} (${r.pollsPerTask.p95})`],
    ['POSTs per shot', (r) => String(r.postsPerShot)],
    ['video GETs per shot', (r) => String(r.downloadsPerShot)],
    ['peak RSS MB (worker / baseline)', (r) => String(r.process.peakRssMb)],
    ['worker memory settings', (r) => (r.pipeline === 'ours' ? settingsText(r.workerMemorySettings) : '–')],
    ['worker peak RSS MB before any work', (r) => (r.idlePeakRssMb === undefined ? '–' : String(r.idlePeakRssMb))],
    ['its children peak RSS MB (report / ffmpeg)', (r) => (r.process.childPeakRssMb ? `${r.process.childPeakRssMb.node ?? '–'} / ${r.process.childPeakRssMb.ffmpeg ?? '–'}` : '–')],
    ['CPU s (process + ffmpeg children)', (r) => `${r.process.cpuSeconds} + ${r.process.childCpuSeconds}`],
    ['Temporal server CPU s', (r) => (r.serverCpuSeconds === undefined ? '–' : String(r.serverCpuSeconds))],
    ['shot history events p50 / max', (r) => (r.history ? `${r.history.shotEvents.p50} / ${r.history.shotEvents.max}` : '–')],
    ['shot history bytes p50 / max', (r) => (r.history ? `${r.history.shotBytes.p50} / ${r.history.shotBytes.max}` : '–')],
    ['shot payload bytes p50 / max', (r) => (r.history ? `${r.history.shotPayloadBytes.p50} / ${r.history.shotPayloadBytes.max}` : '–')],
    ['episode runs (continue-as-new)', (r) => (r.history ? String(r.history.episodeRuns) : '–')],
    ['episode events per run', (r) => (r.history ? r.history.episodeEventsPerRun.join(' + ') : '–')],
    ['episode bytes per run', (r) => (r.history ? r.history.episodeBytesPerRun.map(formatBytes).join(' + ') : '–')],
  ];
  const header = ['', ...runs.map((r) => r.label)];
  const body = rows.map(([name, f]) => [name, ...runs.map(f)]);
  const widths = header.map((_, i) => Math.max(...[header, ...body].map((row) => (row[i] ?? '').length)));
  const line = (row: string[]) => `| ${row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(header), `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...body.map(line)].join('\n');
}

/** Where a shot's time goes in the pipeline: per activity, mean per shot, waiting for a worker slot vs running. */
export function formatActivities(runs: RunMetrics[]): string {
  const ours = runs.filter((r) => r.history);
  const names = [...new Set(ours.flatMap((r) => Object.keys(r.history!.activities)))];
  const lines = ['Activities, mean per shot: calls, s waiting for a worker slot + s running'];
  for (const name of names) {
    const cells = ours.map((r) => {
      const a = r.history!.activities[name];
      return `${r.label}: ${a ? `${a.calls} × ${a.queueSeconds} + ${a.runSeconds}` : '–'}`;
    });
    lines.push(`  ${name.padEnd(15)} ${cells.join('   ')}`);
  }
  return lines.join('\n');
}

export function formatModel(outcomes: ScheduleOutcome[], timeFactor: number): string {
  const lines = [`Poll schedules alone (no infrastructure; real seconds, × ${timeFactor} to compare with the table):`];
  for (const o of outcomes) {
    lines.push(`  ${o.schedule.padEnd(58)} ${String(o.pollsPerTask).padStart(6)} polls/task, lag p50 ${o.detectionLagSeconds.p50} s, p95 ${o.detectionLagSeconds.p95} s`);
  }
  return lines.join('\n');
}

function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '–';
  if (n >= 1e6) return `${round(n / 1e6, 2)} MB`;
  if (n >= 1e3) return `${round(n / 1e3, 1)} KB`;
  return `${n} B`;
}

/** A worker's memory settings as read from its environment, for a table cell or a target's evidence. */
function settingsText(settings: Record<string, string> | undefined): string {
  if (!settings) return 'settings unknown';
  return Object.entries(settings).map(([k, v]) => `${k}=${v}`).join(' ') || 'no MALLOC_ARENA_MAX or NODE_OPTIONS';
}
