/**
 * `i2v validate`: a dry run that submits nothing and writes nothing. One line per shot (ready, will be
 * prepared and how, input error with its fix, done, orphan, misnamed file), totals, the estimated cost from
 * config/prices.json and a rough time. Also the pre-flight of `i2v run`: the same checks, then the shots with
 * input errors are left out of the run (or, with --strict, the run does not start) and recorded in tasks.json.
 */
import * as path from 'node:path';
import { ExitError } from '../errors';
import { formatMoney, PRICES_FILE } from '../pricing';
import type { RunPlan } from '../runs/scan';
import { readTaskRecord, updateTaskRecord } from '../runs/taskRecord';
import {
  inspectRun,
  SHOT_STATES,
  validationReportJson,
  type RunProblem,
  type ShotReport,
  type ShotState,
  type ValidateOptions,
  type ValidationReport,
} from '../runs/validate';

export interface ValidateCommandOptions extends ValidateOptions {
  /** Print the report as JSON (schema in README "Validate") instead of the table. */
  json: boolean;
}

/** Prints the report and returns the exit code: 0 when every shot is ready or done, 2 otherwise. */
export async function validateCommand(runDir: string, opts: ValidateCommandOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const { report } = await inspectRun(runDir, opts);
  out.write(opts.json ? `${JSON.stringify(validationReportJson(report), null, 2)}\n` : `${formatReport(report).join('\n')}\n`);
  return report.exitCode;
}

/** The human-readable report: a table per episode, problems, totals, cost, time and a verdict. */
export function formatReport(report: ValidationReport): string[] {
  const { generation: g } = report;
  const lines = [
    `Run folder: ${report.runDir}`,
    `Model ${g.model} · ${g.resolution} · ${g.duration} s per shot · prompts up to ${g.promptMaxChars} characters · ${report.maxInFlight} in flight per episode`,
  ];
  const label = (shot: ShotReport): string => (shot.shot === null ? shot.name : shot.key);
  const labelWidth = Math.max(0, ...report.episodes.flatMap((e) => e.shots.map((s) => displayWidth(label(s)))));
  const stateWidth = Math.max(...SHOT_STATES.map((s) => s.length));
  for (const episode of report.episodes) {
    lines.push('', episode.name);
    if (episode.shots.length === 0) lines.push('  (no shots)');
    for (const shot of episode.shots) {
      const name = label(shot);
      lines.push(`  ${name}${' '.repeat(labelWidth - displayWidth(name))}  ${shot.state.padEnd(stateWidth)}  ${shotDetail(shot)}`);
    }
  }
  if (report.problems.length > 0) {
    lines.push('', 'Other problems');
    for (const p of report.problems) lines.push(`  ${locatedText(p)}`);
  }
  lines.push('', `Totals: ${formatTotals(report)}`, costLine(report), timeLine(report), verdict(report));
  return lines;
}

export interface PreflightOptions extends ValidateOptions {
  /** Refuse to start (ExitError, exit code 2) when validation finds any problem. */
  strict: boolean;
  /** Where to print the problems and the cost line; nothing is printed without it. */
  out?: NodeJS.WritableStream;
}

export interface PreflightError {
  key: string;
  episode: number;
  shot: number;
  name: string;
  /** Run-relative, `/`-separated. */
  imagePath: string | null;
  category: string;
  message: string;
  fix: string;
}

export interface PreflightResult {
  report: ValidationReport;
  /**
   * The scan with only the runnable shots, each carrying the prompt to submit (truncated when
   * --truncate-prompts cut it): what `run` turns into episode workflows.
   */
  plan: RunPlan;
  /** Keys of the shots `run` passes on: ready, will-prepare and done (done ones are skipped by the plan). */
  runnable: Set<string>;
  /** Keys of the ready shots: their images are acceptable to the API as they are (from their headers). */
  asIs: Set<string>;
  /** Shots left out of the run for an input error, in report order. */
  errors: PreflightError[];
}

/** Validation before `run`: reports problems, leaves shots with input errors out, refuses everything with `strict`. */
export async function preflight(runDir: string, opts: PreflightOptions): Promise<PreflightResult> {
  // Before a run, headers are enough: preparation decodes each image in full anyway, right before its (paid)
  // submission, and fails the shot if it is broken. --strict checks everything up front, as `i2v validate` does.
  const { plan, report } = await inspectRun(runDir, { ...opts, verifyPixels: opts.verifyPixels ?? opts.strict });
  const issues = issueLines(report);
  if (opts.strict && report.exitCode !== 0) {
    throw new ExitError(
      [`Not starting (--strict): ${issues.length} problem(s) in the inputs. Fix them, or run without --strict to skip those shots.`, ...issues].join('\n'),
      2,
    );
  }
  const shots = report.episodes.flatMap((e) => e.shots);
  const runnableShots = shots.filter((s) => s.state === 'ready' || s.state === 'will-prepare' || s.state === 'done');
  const runnable = new Set(runnableShots.map((s) => s.key));
  const prompts = new Map(runnableShots.map((s) => [s.key, s.prompt]));
  const runPlan: RunPlan = {
    ...plan,
    episodes: plan.episodes.map((e) => ({
      ...e,
      shots: e.shots.filter((s) => runnable.has(s.key)).map((s) => ({ ...s, prompt: prompts.get(s.key) ?? s.prompt })),
    })),
  };
  const errors = shots
    .filter((s): s is ShotReport & { shot: number; error: NonNullable<ShotReport['error']> } => s.state === 'input-error' && s.shot !== null && s.error !== null)
    .map((s) => ({ key: s.key, episode: s.episode, shot: s.shot, name: s.name, imagePath: s.imagePath, ...s.error }));

  if (opts.out) {
    for (const line of issues) opts.out.write(`${line}\n`);
    const prepare = report.totals['will-prepare'];
    opts.out.write(
      `Inputs: ${report.totals.toSubmit} shot(s) to generate${prepare > 0 ? ` (${prepare} image(s) to prepare first)` : ''}, ` +
        `${report.totals.done} already done, ${errors.length} skipped for input errors.\n${costLine(report)}\n`,
    );
  }
  const asIs = new Set(shots.filter((s) => s.state === 'ready').map((s) => s.key));
  return { report, plan: runPlan, runnable, asIs, errors };
}

/**
 * Marks each shot with an input error FAILED in tasks.json (error_code `InputError:<category>`, the message and
 * its fix), so `status` and the reports show why it was not generated. Only takes that never reached the
 * provider are written: an entry with a task id keeps its record and resume rules. Unchanged entries are not
 * rewritten. Returns the keys written.
 */
export async function recordInputErrors(runDir: string, report: ValidationReport): Promise<string[]> {
  const records = await readTaskRecord(report.runDir);
  const written: string[] = [];
  for (const shot of report.episodes.flatMap((e) => e.shots)) {
    if (shot.state !== 'input-error' || shot.shot === null || !shot.error) continue;
    const existing = records[shot.key];
    if (existing?.task_id) continue;
    const errorCode = `InputError:${shot.error.category}`;
    const errorMessage = `${shot.error.message} ${shot.error.fix}`.trim();
    if (existing?.status === 'FAILED' && existing.error_code === errorCode && existing.error_message === errorMessage) continue;
    await updateTaskRecord(runDir, shot.key, {
      episode: shot.episode,
      shot: shot.shot,
      take: existing?.take ?? 1,
      image_path: shot.imagePath ?? existing?.image_path ?? '',
      prompt: existing?.prompt ?? '',
      status: 'FAILED',
      error_code: errorCode,
      error_message: errorMessage,
      model: report.generation.model,
      resolution: report.generation.resolution,
    });
    written.push(shot.key);
  }
  return written;
}

/** One line per problem, for `run`'s pre-flight and the --strict refusal. */
function issueLines(report: ValidationReport): string[] {
  const lines: string[] = [];
  for (const shot of report.episodes.flatMap((e) => e.shots)) {
    if (shot.error) lines.push(`! ${shot.shot === null ? (shot.imagePath ?? shot.key) : shot.key}: ${problemText(shot.error)}`);
  }
  for (const p of report.problems) lines.push(`! ${locatedText(p)}`);
  return lines;
}

function shotDetail(shot: ShotReport): string {
  if (shot.error) return problemText(shot.error);
  const file = shot.imagePath ? path.posix.basename(shot.imagePath) : '';
  const detail = shot.state === 'done' ? 'video on disk' : shot.changes.join('; ');
  return file && detail ? `${file}: ${detail}` : file || detail;
}

function problemText(p: { category: string; message: string; fix: string }): string {
  return `[${p.category}] ${p.message}${p.fix ? ` → ${p.fix}` : ''}`;
}

/** A run-level problem, prefixed with its file unless the message names it already. */
function locatedText(p: RunProblem): string {
  return `${p.path && !p.message.includes(p.path) ? `${p.path}: ` : ''}${problemText(p)}`;
}

const WIDE = /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]|\p{Extended_Pictographic}/u;

/** Terminal columns: CJK and full-width characters and emoji take two. */
function displayWidth(text: string): number {
  let width = 0;
  for (const ch of text) width += WIDE.test(ch) ? 2 : 1;
  return width;
}

const STATE_WORDS: Record<ShotState, [string, string]> = {
  ready: ['ready', 'ready'],
  'will-prepare': ['to be prepared', 'to be prepared'],
  'input-error': ['input error', 'input errors'],
  done: ['done', 'done'],
  'orphan-prompt': ['prompt without an image', 'prompts without an image'],
  'orphan-image': ['image without a prompt', 'images without a prompt'],
  'bad-name': ['misnamed file', 'misnamed files'],
};

function formatTotals(report: ValidationReport): string {
  const parts = SHOT_STATES.filter((s) => s === 'ready' || report.totals[s] > 0).map((s) => {
    const n = report.totals[s];
    return `${n} ${STATE_WORDS[s][n === 1 ? 0 : 1]}`;
  });
  if (report.totals.problems > 0) parts.push(`${report.totals.problems} other problem${report.totals.problems === 1 ? '' : 's'}`);
  return parts.join(', ');
}

function costLine(report: ValidationReport): string {
  const { cost, generation: g } = report;
  const what = `${g.model} ${g.resolution}`;
  if (cost.amount === null || cost.currency === null || cost.perSecond === null) {
    return `Estimated cost: unknown (no price for ${what} in ${PRICES_FILE})`;
  }
  if (cost.shots === 0) return `Estimated cost: ${formatMoney(0, cost.currency)} (nothing to submit)`;
  const perSecond = formatMoney(cost.perSecond, cost.currency);
  return `Estimated cost: ${formatMoney(cost.amount, cost.currency)} (${cost.shots} shot${cost.shots === 1 ? '' : 's'} × ${cost.secondsPerShot} s × ${perSecond}/s, ${what})`;
}

function timeLine(report: ValidationReport): string {
  if (report.time.seconds === 0) return 'Estimated time: none (nothing to submit)';
  return `Estimated time: about ${formatDuration(report.time.seconds)}, assuming ${report.time.assumption}`;
}

function formatDuration(seconds: number): string {
  const minutes = Math.round(seconds / 6) / 10;
  if (minutes < 60) return `${minutes} min`;
  const h = Math.floor(minutes / 60);
  const m = Math.round(minutes - h * 60);
  return m === 0 ? `${h} h` : `${h} h ${m} min`;
}

function verdict(report: ValidationReport): string {
  const { totals } = report;
  if (report.exitCode === 0) {
    return totals.toSubmit === 0 ? 'Nothing to submit: every shot is done.' : `All ${totals.toSubmit} shot(s) to generate are ready.`;
  }
  const problems = SHOT_STATES.filter((s) => s !== 'ready' && s !== 'will-prepare' && s !== 'done').reduce((n, s) => n + totals[s], totals.problems);
  return `${problems} problem(s) found: \`i2v run\` skips those shots (\`--strict\` refuses to start). Fix them and validate again.`;
}
