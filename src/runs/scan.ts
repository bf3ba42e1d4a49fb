/**
 * Reads a run folder into a plan: which shots can be generated (image + prompt) and what is wrong with the
 * rest. Read-only: it never writes into the run folder. Problems are values, not exceptions, so one bad file
 * does not hide the rest of the run; only an unusable run folder throws.
 */
import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors';
import {
  IMAGES_DIR,
  IMAGE_EXTENSIONS,
  PROMPTS_DIR,
  episodeName,
  imagesDir,
  parseEpisodeDirName,
  parseImageName,
  promptFileName,
  promptsDir,
  relativeToRun,
  shotName,
  taskKey,
} from './paths';
import { parsePromptFile } from './prompts';

export interface PlannedShot {
  episode: number;
  shot: number;
  /** tasks.json key, `Episode-01-001`. */
  key: string;
  /** `Episode-01-Shot-001`. */
  name: string;
  /** Absolute. */
  imagePath: string;
  prompt: string;
}

export interface PlannedEpisode {
  episode: number;
  /** `Episode-01`. */
  name: string;
  /** Shots that have exactly one image and a valid prompt, sorted by shot number. */
  shots: PlannedShot[];
  /** What is wrong with this episode's files. */
  problems: ScanProblem[];
}

export type ScanProblemKind = 'orphan-image' | 'orphan-prompt' | 'bad-name' | 'prompt-error' | 'duplicate-image';

export interface ScanProblem {
  kind: ScanProblemKind;
  /** One sentence naming the file (run-relative) and what to do. */
  message: string;
  /** Absolute path of the file concerned. */
  path?: string;
  shot?: number;
}

export interface RunPlan {
  /** Absolute, symlinks resolved. */
  runDir: string;
  /** Stable identity of the run folder, safe for Temporal workflow ids; see runIdFor. */
  runId: string;
  /** Sorted by episode number. */
  episodes: PlannedEpisode[];
  /** Problems that belong to no episode (stray files at the top of the image or prompt folder). */
  problems: ScanProblem[];
}

export interface ScanOptions {
  /** Only these episodes; asking for one that has neither images nor prompts is an InputError. */
  episodes?: number[];
}

/** Files that operating systems drop into folders; never worth a warning. */
const SYSTEM_FILES = new Set(['thumbs.db', 'desktop.ini']);

export async function scanRun(runDir: string, opts: ScanOptions = {}): Promise<RunPlan> {
  const root = await resolveRunDir(runDir);
  const rel = (p: string): string => relativeToRun(root, p);
  const wanted = (ep: number): boolean => !opts.episodes || opts.episodes.includes(ep);
  const runProblems: ScanProblem[] = [];
  /** Every episode with images or a prompt file, before filtering. */
  const present = new Set<number>();
  const episodes = new Map<number, EpisodeFiles>();
  const episodeFiles = (ep: number): EpisodeFiles => {
    let files = episodes.get(ep);
    if (!files) episodes.set(ep, (files = { images: new Map(), problems: [] }));
    return files;
  };

  const imagesRoot = imagesDir(root);
  for (const entry of await listDir(imagesRoot)) {
    const entryPath = path.join(imagesRoot, entry.name);
    const kind = await entryKind(entryPath, entry);
    const episode = kind === 'dir' ? parseEpisodeDirName(entry.name) : undefined;
    if (episode === undefined) {
      const image = kind === 'file' ? parseImageName(entry.name) : undefined;
      const hint = image
        ? `move it into ${IMAGES_DIR}/${episodeName(image.episode)}/`
        : `expected episode folders named like ${episodeName(1)}`;
      runProblems.push({ kind: 'bad-name', message: `${rel(entryPath)}: not an episode folder; ${hint}.`, path: entryPath });
      continue;
    }
    present.add(episode);
    if (!wanted(episode)) continue;
    await collectImages(entryPath, episode, episodeFiles(episode), rel);
  }

  const promptFiles = new Map<number, string>();
  const promptsRoot = promptsDir(root);
  for (const entry of await listDir(promptsRoot, { missingOk: true })) {
    const entryPath = path.join(promptsRoot, entry.name);
    const m = /^Episode-(\d+)-Video-Prompts\.txt$/.exec(entry.name);
    const episode = m ? Number(m[1]) : undefined;
    if (episode !== undefined && entry.name === promptFileName(episode) && (await entryKind(entryPath, entry)) === 'file') {
      present.add(episode);
      if (wanted(episode)) {
        promptFiles.set(episode, entryPath);
        episodeFiles(episode);
      }
      continue;
    }
    const expected = episode !== undefined ? promptFileName(episode) : promptFileName(1);
    runProblems.push({
      kind: 'bad-name',
      message: `${rel(entryPath)}: not a prompt file; expected a file named like ${expected}.`,
      path: entryPath,
    });
  }

  for (const ep of opts.episodes ?? []) {
    if (!present.has(ep)) {
      const found = [...present].sort((a, b) => a - b).map(episodeName);
      throw new InputError(
        `${episodeName(ep)} has neither images nor a prompt file in ${root}.`,
        'episode-missing',
        found.length > 0 ? `Episodes found: ${found.join(', ')}.` : `Add ${IMAGES_DIR}/${episodeName(ep)}/ and ${PROMPTS_DIR}/${promptFileName(ep)}.`,
      );
    }
  }

  const planned: PlannedEpisode[] = [];
  for (const ep of [...episodes.keys()].sort((a, b) => a - b)) {
    planned.push(await planEpisode(root, ep, episodes.get(ep)!, promptFiles.get(ep), rel));
  }
  return { runDir: root, runId: runIdFor(root), episodes: planned, problems: runProblems };
}

/**
 * `<basename, reduced to [A-Za-z0-9._-]>-<first 8 hex of sha256(real path)>`: readable, and different for
 * two folders with the same name. Takes the resolved path, so a symlink and its target share an id.
 */
export function runIdFor(realRunDir: string): string {
  const trim = (s: string): string => s.replace(/^[-.]+|[-.]+$/g, '');
  const base = trim(trim(path.basename(realRunDir).replace(/[^A-Za-z0-9._-]+/g, '-')).slice(0, 40)) || 'run';
  const hash = createHash('sha256').update(realRunDir).digest('hex').slice(0, 8);
  return `${base}-${hash}`;
}

interface EpisodeFiles {
  /** shot → absolute image paths (more than one is a duplicate). */
  images: Map<number, string[]>;
  problems: ScanProblem[];
}

async function collectImages(dir: string, episode: number, files: EpisodeFiles, rel: (p: string) => string): Promise<void> {
  for (const entry of await listDir(dir)) {
    const filePath = path.join(dir, entry.name);
    const kind = await entryKind(filePath, entry);
    const image = kind === 'file' ? parseImageName(entry.name) : undefined;
    let problem: string | undefined;
    if (kind !== 'file') {
      problem = `not an image file; images sit directly in ${episodeName(episode)}/ and are named like ${shotName(episode, 1)}.png`;
    } else if (!image) {
      const ext = path.extname(entry.name).slice(1).toLowerCase();
      problem = /^Episode-\d+-Shot-\d+\.[^.]+$/.test(entry.name)
        ? `.${ext} images are not supported; use ${IMAGE_EXTENSIONS.join(', ')}`
        : `not an image name the pipeline understands; rename it like ${shotName(episode, 1)}.png`;
    } else if (image.episode !== episode) {
      problem = `belongs to ${episodeName(image.episode)} but sits in the ${path.basename(dir)} folder; move it to ${IMAGES_DIR}/${episodeName(image.episode)}/`;
    }
    if (problem || !image) {
      files.problems.push({ kind: 'bad-name', message: `${rel(filePath)}: ${problem}.`, path: filePath });
      continue;
    }
    const same = files.images.get(image.shot);
    if (same) same.push(filePath);
    else files.images.set(image.shot, [filePath]);
  }
}

async function planEpisode(
  root: string,
  episode: number,
  files: EpisodeFiles,
  promptFile: string | undefined,
  rel: (p: string) => string,
): Promise<PlannedEpisode> {
  const problems = [...files.problems];
  const expectedPromptFile = path.join(promptsDir(root), promptFileName(episode));
  let prompts = new Map<number, { text: string }>();
  const shotsWithPromptErrors = new Set<number>();
  // An unreadable prompt file is one problem, not one per image.
  let reportOrphanImages = true;

  if (promptFile) {
    const text = decodeUtf8(await fs.readFile(promptFile));
    if (text === undefined) {
      reportOrphanImages = false;
      problems.push({
        kind: 'prompt-error',
        message: `${rel(promptFile)}: not UTF-8 text (perhaps GBK); save it as UTF-8 and re-run.`,
        path: promptFile,
      });
    } else {
      const parsed = parsePromptFile(text, rel(promptFile));
      prompts = parsed.prompts;
      for (const err of parsed.errors) {
        if (err.shot !== undefined) shotsWithPromptErrors.add(err.shot);
        problems.push({ kind: 'prompt-error', message: `${err.message} ${err.fix}`, path: promptFile, shot: err.shot });
      }
    }
  }

  const shots: PlannedShot[] = [];
  const shotNumbers = [...new Set([...files.images.keys(), ...prompts.keys()])].sort((a, b) => a - b);
  for (const shot of shotNumbers) {
    const images = files.images.get(shot) ?? [];
    const prompt = prompts.get(shot);
    if (images.length > 1) {
      problems.push({
        kind: 'duplicate-image',
        message: `${shotName(episode, shot)} has ${images.length} images (${images.map((p) => path.basename(p)).join(', ')}); keep one and re-run.`,
        path: images[0],
        shot,
      });
    }
    if (shotsWithPromptErrors.has(shot)) continue;
    if (images.length > 0 && !prompt) {
      if (!reportOrphanImages) continue;
      problems.push({
        kind: 'orphan-image',
        message: promptFile
          ? `${rel(images[0]!)}: no "Shot ${String(shot).padStart(3, '0')}:" prompt in ${rel(promptFile)}.`
          : `${rel(images[0]!)}: no prompt file ${rel(expectedPromptFile)}.`,
        path: images[0],
        shot,
      });
      continue;
    }
    if (images.length === 0 && prompt) {
      problems.push({
        kind: 'orphan-prompt',
        message: `${rel(promptFile!)}: shot ${shot} has a prompt but no image ${IMAGES_DIR}/${episodeName(episode)}/${shotName(episode, shot)}.png (or .jpg, .jpeg, .webp, .bmp).`,
        path: promptFile,
        shot,
      });
      continue;
    }
    if (images.length === 1 && prompt) {
      shots.push({
        episode,
        shot,
        key: taskKey(episode, shot),
        name: shotName(episode, shot),
        imagePath: images[0]!,
        prompt: prompt.text,
      });
    }
  }
  return { episode, name: episodeName(episode), shots, problems };
}

async function resolveRunDir(runDir: string): Promise<string> {
  const absolute = path.resolve(runDir);
  let real: string;
  try {
    real = await fs.realpath(absolute);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    throw new InputError(`Run folder ${absolute} does not exist.`, 'run-folder', 'Pass the folder that contains 05_generated_images/ and 07_video_prompts/.');
  }
  if (!(await isDirectory(path.join(real, IMAGES_DIR)))) {
    throw new InputError(
      `${real} has no ${IMAGES_DIR}/ folder, so it is not a run folder.`,
      'run-folder',
      `Pass the folder that contains ${IMAGES_DIR}/${episodeName(1)}/${shotName(1, 1)}.png and ${PROMPTS_DIR}/${promptFileName(1)}.`,
    );
  }
  return real;
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Entries sorted by name, without dotfiles and OS litter. */
async function listDir(dir: string, opts: { missingOk?: boolean } = {}): Promise<Dirent[]> {
  let entries: Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (opts.missingOk && (err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return entries
    .filter((e) => !e.name.startsWith('.') && !SYSTEM_FILES.has(e.name.toLowerCase()))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Follows symlinks, so a linked image or episode folder counts as what it points to. */
async function entryKind(p: string, entry: Dirent): Promise<'file' | 'dir' | 'other'> {
  if (entry.isFile()) return 'file';
  if (entry.isDirectory()) return 'dir';
  if (!entry.isSymbolicLink()) return 'other';
  try {
    const st = await fs.stat(p);
    return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
  } catch {
    return 'other';
  }
}

function decodeUtf8(bytes: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
