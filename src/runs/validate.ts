/**
 * What `run` would do with every shot of a run folder, found without submitting or writing anything: the
 * scan (scanRun), the task record, each prompt against the model's limit, and each image inspected exactly as
 * preparation will treat it (planImagePreparation). Shared by `i2v validate` and the pre-flight of `i2v run`.
 *
 * The report is plain data in a fixed order (episodes, shots by number, then misnamed files by path), with
 * run-relative POSIX paths and no clock readings, so its JSON form is stable; see validationReportJson.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { nextTake } from '../cli/plan';
import type { GenerationParams } from '../config';
import { ConfigError, type InputError } from '../errors';
import { planImagePreparation, type ImageLimits } from '../media/image';
import { isKnownModel, modelLimits, priceOf, roundMoney } from '../pricing';
import {
  imagesDir,
  outputPaths,
  parseEpisodeDirName,
  parseImageName,
  promptFilePath,
  relativeToRun,
  shotName,
  taskKey,
} from './paths';
import { parsePromptFile, type ParsedPrompt, type PromptError } from './prompts';
import { scanRun, type PlannedShot, type RunPlan, type ScanProblem } from './scan';
import { readTaskRecord, type TaskRecord } from './taskRecord';

/**
 * - `ready`: submitted as it is. `will-prepare`: the image is resized or re-encoded first (see `changes`).
 * - `input-error`: skipped by `run` until fixed. `done`: its video and thumbnail are on disk (tasks.json SUCCESS).
 * - `orphan-prompt`, `orphan-image`: half a shot. `bad-name`: a file the pipeline does not understand.
 */
export type ShotState = 'ready' | 'will-prepare' | 'input-error' | 'done' | 'orphan-prompt' | 'orphan-image' | 'bad-name';

/** Display and totals order. */
export const SHOT_STATES: readonly ShotState[] = ['ready', 'will-prepare', 'input-error', 'done', 'orphan-prompt', 'orphan-image', 'bad-name'];

/** States that make validation fail (exit 2) and `run --strict` refuse to start. */
const ISSUE_STATES: ReadonlySet<ShotState> = new Set(['input-error', 'orphan-prompt', 'orphan-image', 'bad-name']);

/** A typical generation time (reference §6: 1–5 min); only for the rough estimate. */
export const TYPICAL_SHOT_SECONDS = 150;

export interface ValidateOptions {
  episodes?: number[];
  generation: GenerationParams;
  maxInFlight: number;
  /** Cut prompts over the model's limit to the limit instead of reporting an input error. */
  truncatePrompts: boolean;
  imageLimits: ImageLimits;
  /**
   * Decode every image in full to prove it is not truncated or corrupt (default). Without it only headers are
   * read: a broken image then fails its shot at preparation, before anything is paid, instead of up front.
   */
  verifyPixels?: boolean;
}

export interface InputProblem {
  /** Stable for scripts: `image-too-small`, `prompt-too-long`, `prompt-duplicate`, ... */
  category: string;
  message: string;
  /** One line telling the user what to do. */
  fix: string;
}

export interface ShotReport {
  /** tasks.json key (`Episode-01-001`); for a `bad-name` file, its run-relative path. */
  key: string;
  episode: number;
  /** Null for a `bad-name` file. */
  shot: number | null;
  /** `Episode-01-Shot-001`, or the file name of a `bad-name` file. */
  name: string;
  state: ShotState;
  /** Run-relative, `/`-separated. */
  imagePath: string | null;
  /** Line of the shot's marker in its prompt file. */
  promptLine: number | null;
  /** Length of the prompt in the file, in characters (Unicode code points). */
  promptChars: number | null;
  /** For people: what preparation will do, or a note such as a truncated prompt. */
  changes: string[];
  /** Set for `input-error`, `orphan-*` and `bad-name`. */
  error: InputProblem | null;
  /** The prompt `run` submits (already truncated with --truncate-prompts). Not part of the JSON. */
  prompt: string | null;
}

export interface EpisodeReport {
  episode: number;
  name: string;
  shots: ShotReport[];
}

/** A problem that belongs to no single shot (a stray file, text before the first marker, a non-UTF-8 prompt file). */
export interface RunProblem extends InputProblem {
  /** Run-relative, `/`-separated. */
  path: string | null;
}

export interface ValidationReport {
  /** Absolute, symlinks resolved. Not part of the JSON. */
  runDir: string;
  generation: { model: string; resolution: string; duration: number; promptMaxChars: number };
  maxInFlight: number;
  truncatePrompts: boolean;
  upscaleSmall: boolean;
  episodes: EpisodeReport[];
  problems: RunProblem[];
  /** Shots by state, in SHOT_STATES order, then `problems` (run-level) and `toSubmit` (ready + will-prepare). */
  totals: Record<ShotState, number> & { problems: number; toSubmit: number };
  /** For the shots that would be submitted; amount, currency and perSecond are null when the price table has no price. */
  cost: { amount: number | null; currency: string | null; perSecond: number | null; secondsPerShot: number; shots: number };
  time: { seconds: number; assumption: string };
  /** 0 when nothing is wrong, 2 when any shot or file has a problem. */
  exitCode: 0 | 2;
}

export async function validateRun(runDir: string, opts: ValidateOptions): Promise<ValidationReport> {
  return (await inspectRun(runDir, opts)).report;
}

/** The report and the scan it was made from (pre-flight builds the run's plan from both). */
export async function inspectRun(runDir: string, opts: ValidateOptions): Promise<{ plan: RunPlan; report: ValidationReport }> {
  const { generation } = opts;
  const limits = modelLimits(generation.model);
  if (isKnownModel(generation.model) && !limits.resolutions.includes(generation.resolution)) {
    throw new ConfigError(`${generation.model} does not offer ${generation.resolution}.`, `Use --resolution ${limits.resolutions.join(' or ')}.`);
  }
  if (!Number.isInteger(opts.maxInFlight) || opts.maxInFlight < 1) {
    throw new ConfigError(`--max-in-flight must be a whole number ≥ 1, not ${opts.maxInFlight}.`);
  }

  const plan = await scanRun(runDir, { episodes: opts.episodes });
  const root = plan.runDir;
  const rel = (p: string): string => relativeToRun(root, p);
  const records = await readTaskRecord(root);
  const problems: RunProblem[] = plan.problems.map((p) => ({ ...fromScanProblem(p), path: p.path ? rel(p.path) : null }));
  const check: ShotCheck = { root, records, opts, promptMaxChars: limits.promptMaxChars };

  const episodes: EpisodeReport[] = [];
  for (const episode of plan.episodes) {
    const prompts = await readPrompts(root, episode.episode);
    const byShot = new Map<number, ShotReport>();
    const files: ShotReport[] = [];
    const base = (shot: number): Pick<ShotReport, 'key' | 'episode' | 'shot' | 'name'> => ({
      key: taskKey(episode.episode, shot),
      episode: episode.episode,
      shot,
      name: shotName(episode.episode, shot),
    });
    const promptFacts = (shot: number): Pick<ShotReport, 'promptLine' | 'promptChars'> => {
      const p = prompts.parsed.get(shot);
      return { promptLine: p?.line ?? null, promptChars: p ? charCount(p.text) : null };
    };
    const add = (entry: ShotReport): void => {
      if (entry.shot === null) files.push(entry);
      else if (!byShot.has(entry.shot)) byShot.set(entry.shot, entry);
    };

    const checked = await Promise.all(episode.shots.map((shot) => checkShot(shot, promptFacts(shot.shot).promptLine, check)));
    checked.forEach(add);

    for (const problem of episode.problems) {
      // Prompt-file problems come from the parse below, with their categories and line numbers.
      if (problem.kind === 'prompt-error') continue;
      const file = problem.path ? rel(problem.path) : null;
      if (problem.kind === 'bad-name' || problem.shot === undefined) {
        add({ key: file ?? episode.name, episode: episode.episode, shot: null, name: path.basename(file ?? ''), state: 'bad-name', imagePath: null, promptLine: null, promptChars: null, changes: [], error: fromScanProblem(problem), prompt: null });
        continue;
      }
      const shot = problem.shot;
      const state: ShotState = problem.kind === 'orphan-image' ? 'orphan-image' : problem.kind === 'orphan-prompt' ? 'orphan-prompt' : 'input-error';
      const imagePath = problem.kind === 'orphan-prompt' ? null : file;
      add({ ...base(shot), state, imagePath, ...promptFacts(shot), changes: [], error: fromScanProblem(problem), prompt: null });
    }

    // Shots the scan set aside for a prompt error: listed with their image, so nothing goes unmentioned.
    const promptFile = rel(promptFilePath(root, episode.episode));
    if (prompts.notUtf8 || prompts.errors.length > 0) {
      const images = await imagesByShot(root, episode.episode);
      for (const err of prompts.errors) {
        if (err.shot === undefined) {
          problems.push({ category: err.category, path: promptFile, message: err.message, fix: err.fix ?? '' });
          continue;
        }
        const image = images.get(err.shot);
        add({ ...base(err.shot), state: 'input-error', imagePath: image?.length === 1 ? rel(image[0]!) : null, promptLine: err.line, promptChars: null, changes: [], error: { category: err.category, message: err.message, fix: err.fix ?? '' }, prompt: null });
      }
      if (prompts.notUtf8) {
        const error = { category: 'prompt-encoding', message: `${promptFile} is not UTF-8 text (perhaps GBK), so no prompt in it can be read.`, fix: 'Save it as UTF-8 and re-run.' };
        problems.push({ ...error, path: promptFile });
        for (const [shot, paths] of images) {
          add({ ...base(shot), state: 'input-error', imagePath: rel(paths[0]!), promptLine: null, promptChars: null, changes: [], error, prompt: null });
        }
      }
    }

    const shots = [...byShot.values()].sort((a, b) => a.shot! - b.shot!);
    files.sort((a, b) => compare(a.key, b.key));
    episodes.push({ episode: episode.episode, name: episode.name, shots: [...shots, ...files] });
  }
  problems.sort((a, b) => compare(a.path ?? '', b.path ?? '') || compare(a.message, b.message));

  const report = summarise(root, opts, limits.promptMaxChars, episodes, problems);
  return { plan, report };
}

interface ShotCheck {
  root: string;
  records: TaskRecord;
  opts: ValidateOptions;
  promptMaxChars: number;
}

async function checkShot(shot: PlannedShot, promptLine: number | null, check: ShotCheck): Promise<ShotReport> {
  const { root, records, opts, promptMaxChars } = check;
  const chars = charCount(shot.prompt);
  const entry: ShotReport = {
    key: shot.key,
    episode: shot.episode,
    shot: shot.shot,
    name: shot.name,
    state: 'ready',
    imagePath: relativeToRun(root, shot.imagePath),
    promptLine,
    promptChars: chars,
    changes: [],
    error: null,
    prompt: shot.prompt,
  };
  const record = records[shot.key];
  if (record && nextTake(record, await outputsPresent(root, shot)).done) return { ...entry, state: 'done' };

  const image = await planImagePreparation(shot.imagePath, opts.imageLimits, { verifyPixels: opts.verifyPixels ?? true });
  let error: InputProblem | null = image.error ? fromInputError(image.error) : null;
  const changes = [...image.changes];
  let prompt = shot.prompt;
  if (chars > promptMaxChars) {
    if (opts.truncatePrompts) {
      prompt = Array.from(prompt).slice(0, promptMaxChars).join('');
      changes.push(`prompt truncated from ${chars} to ${promptMaxChars} characters`);
    } else {
      error ??= {
        category: 'prompt-too-long',
        message: `The prompt is ${chars} characters; ${opts.generation.model} reads ${promptMaxChars} and silently drops the rest.`,
        fix: `Shorten it to ${promptMaxChars} characters, or pass --truncate-prompts to cut it there.`,
      };
    }
  }
  if (error) return { ...entry, state: 'input-error', error, prompt: null };
  return { ...entry, state: image.state === 'will-prepare' ? 'will-prepare' : 'ready', changes, prompt };
}

function summarise(root: string, opts: ValidateOptions, promptMaxChars: number, episodes: EpisodeReport[], problems: RunProblem[]): ValidationReport {
  const all = episodes.flatMap((e) => e.shots);
  const count = (state: ShotState): number => all.filter((s) => s.state === state).length;
  const byState = Object.fromEntries(SHOT_STATES.map((s) => [s, count(s)])) as Record<ShotState, number>;
  const toSubmit = byState.ready + byState['will-prepare'];

  const { generation, maxInFlight } = opts;
  const secondsPerShot = generation.duration ?? modelLimits(generation.model).defaultDuration;
  const price = priceOf(generation.model, generation.resolution);
  const cost = price
    ? { amount: roundMoney(price.perSecond * secondsPerShot * toSubmit), currency: price.currency, perSecond: price.perSecond, secondsPerShot, shots: toSubmit }
    : { amount: null, currency: null, perSecond: null, secondsPerShot, shots: toSubmit };

  // Episodes run side by side; within one, shots go in waves of at most maxInFlight.
  const waves = Math.max(0, ...episodes.map((e) => Math.ceil(e.shots.filter((s) => s.state === 'ready' || s.state === 'will-prepare').length / maxInFlight)));
  const time = {
    seconds: waves * TYPICAL_SHOT_SECONDS,
    assumption:
      `${TYPICAL_SHOT_SECONDS / 60} min per shot (the usual range is 1–5 min), at most ${maxInFlight} shot(s) of an episode at once ` +
      'and episodes in parallel; provider queues and rate limits can add to it',
  };

  const issues = all.some((s) => ISSUE_STATES.has(s.state)) || problems.length > 0;
  return {
    runDir: root,
    generation: { model: generation.model, resolution: generation.resolution, duration: secondsPerShot, promptMaxChars },
    maxInFlight,
    truncatePrompts: opts.truncatePrompts,
    upscaleSmall: opts.imageLimits.upscaleSmall,
    episodes,
    problems,
    totals: { ...byState, problems: problems.length, toSubmit },
    cost,
    time,
    exitCode: issues ? 2 : 0,
  };
}

/**
 * The report as stable JSON data: fixed key order, no absolute paths, no prompts (they are in the prompt
 * files; `promptChars` and `promptLine` point at them), no clock readings. The schema is in README "Validate".
 */
export function validationReportJson(report: ValidationReport): unknown {
  const problem = (p: InputProblem | null) => p && { category: p.category, message: p.message, fix: p.fix };
  return {
    version: 1,
    generation: { ...report.generation },
    maxInFlight: report.maxInFlight,
    truncatePrompts: report.truncatePrompts,
    upscaleSmall: report.upscaleSmall,
    episodes: report.episodes.map((e) => ({
      episode: e.episode,
      name: e.name,
      shots: e.shots.map((s) => ({
        key: s.key,
        episode: s.episode,
        shot: s.shot,
        name: s.name,
        state: s.state,
        imagePath: s.imagePath,
        promptLine: s.promptLine,
        promptChars: s.promptChars,
        changes: [...s.changes],
        error: problem(s.error),
      })),
    })),
    problems: report.problems.map((p) => ({ path: p.path, ...problem(p) })),
    totals: { ...report.totals },
    cost: { ...report.cost },
    time: { ...report.time },
    exitCode: report.exitCode,
  };
}

interface EpisodePrompts {
  parsed: Map<number, ParsedPrompt>;
  errors: PromptError[];
  notUtf8: boolean;
}

/** The episode's prompt file parsed again for what the scan does not keep: line numbers and error categories. */
async function readPrompts(root: string, episode: number): Promise<EpisodePrompts> {
  const file = promptFilePath(root, episode);
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EISDIR') return { parsed: new Map(), errors: [], notUtf8: false };
    throw err;
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return { parsed: new Map(), errors: [], notUtf8: true };
  }
  const { prompts, errors } = parsePromptFile(text, relativeToRun(root, file));
  return { parsed: prompts, errors, notUtf8: false };
}

/** Well-named images of one episode by shot (the scan keeps only the shots it could plan). */
async function imagesByShot(root: string, episode: number): Promise<Map<number, string[]>> {
  const byShot = new Map<number, string[]>();
  const dirs = (await fs.readdir(imagesDir(root), { withFileTypes: true })).filter((d) => parseEpisodeDirName(d.name) === episode);
  for (const dir of dirs) {
    const dirPath = path.join(imagesDir(root), dir.name);
    const names = await fs.readdir(dirPath).catch(() => [] as string[]);
    for (const name of names.sort(compare)) {
      const image = parseImageName(name);
      if (!image || image.episode !== episode) continue;
      byShot.set(image.shot, [...(byShot.get(image.shot) ?? []), path.join(dirPath, name)]);
    }
  }
  return byShot;
}

async function outputsPresent(root: string, shot: PlannedShot): Promise<boolean> {
  const paths = outputPaths(root, shot.episode, shot.shot);
  const exists = (p: string) => fs.stat(p).then((st) => st.isFile(), () => false);
  return (await exists(paths.videoPath)) && (await exists(paths.thumbnailPath));
}

const FIXES: Partial<Record<ScanProblem['kind'], string>> = {
  'orphan-image': 'Add its prompt to the episode prompt file, or move the image out of the run folder.',
  'orphan-prompt': 'Add the image, or delete the prompt if the shot was dropped.',
  'duplicate-image': 'Keep one image for the shot and move the others out of the run folder.',
  'bad-name': 'Rename or move the file; images are named like Episode-01-Shot-001.png.',
};

/** Scan messages end with "; <what to do>." when they carry a fix; split it off. */
function fromScanProblem(problem: ScanProblem): InputProblem {
  const at = problem.message.lastIndexOf('; ');
  const category = problem.kind;
  if (at < 0) return { category, message: problem.message, fix: FIXES[problem.kind] ?? '' };
  const fix = problem.message.slice(at + 2);
  return { category, message: `${problem.message.slice(0, at)}.`, fix: fix.charAt(0).toUpperCase() + fix.slice(1) };
}

function fromInputError(err: InputError): InputProblem {
  return { category: err.category, message: err.message, fix: err.fix ?? '' };
}

/** Characters as the API counts them (code points: one per Chinese character or emoji). */
function charCount(text: string): number {
  return Array.from(text).length;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
