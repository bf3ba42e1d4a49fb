/**
 * The task record, `08_generated_videos/tasks.json`: one entry per shot keyed `Episode-01-001`, with the
 * snake_case fields the original Python tool wrote (studios' tools read them), plus our additions.
 * Every update is a locked read-modify-write followed by an atomic replace, so concurrent writers (activities
 * in one worker, or several workers sharing the folder) never lose each other's entries or tear the file.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors';
import { readJsonIfExists, writeFileAtomic } from '../atomic';
import { inLockedBatch, withFileLock } from './lock';
import { relativeToRun, tasksJsonPath } from './paths';

export type TaskRecordStatus = 'PENDING' | 'SUBMITTED' | 'RUNNING' | 'DOWNLOADING' | 'SUCCESS' | 'FAILED';

export interface TaskRecordEntry {
  task_id: string | null;
  status: TaskRecordStatus;
  /** Run-relative, `/`-separated: `05_generated_images/Episode-01/Episode-01-Shot-001.png`. */
  image_path: string;
  prompt: string;
  video_url: string | null;
  /** Run-relative, `/`-separated. */
  video_path: string | null;
  /** Run-relative, `/`-separated. */
  thumbnail_path: string | null;
  /** Local time, `YYYY-MM-DD HH:MM:SS` (see formatLocalTime). */
  submit_time: string | null;
  complete_time: string | null;
  error_message: string | null;
  // Additions over the original tool:
  episode: number;
  shot: number;
  take: number;
  model?: string;
  resolution?: string;
  error_code?: string | null;
  /** How the provider ended the task (`SUCCEEDED`, `FAILED`, `CANCELED`, `UNKNOWN`); null while it runs or if never submitted. */
  task_status?: string | null;
  /** What this take cost at list price (failed tasks are not billed): null while unknown. */
  cost?: number | null;
  currency?: string;
  /** Every take of this shot, oldest first; the top-level fields describe the newest. */
  takes?: TakeRecord[];
  /** ISO 8601, set on every update. */
  updated_at: string;
}

/** One take (one paid submission) of a shot. */
export interface TakeRecord {
  take: number;
  task_id: string | null;
  status: TaskRecordStatus;
  submit_time: string | null;
  complete_time: string | null;
  /** Where this take's video is now: the canonical file for the newest good take, `takes/...` for earlier ones. */
  video_path: string | null;
  cost: number | null;
  currency?: string;
  error_code: string | null;
}

/** Fields every update carries, so any update can create the entry (e.g. after tasks.json was deleted). */
export type TaskRecordIdentity = Pick<TaskRecordEntry, 'episode' | 'shot' | 'take' | 'image_path' | 'prompt'>;

/**
 * Path fields (`image_path`, `video_path`, `thumbnail_path`) may be given absolute; they are stored relative
 * to the run folder. Fields set to undefined are left as they are; `updated_at` is always set.
 */
export type TaskRecordPatch = Partial<Omit<TaskRecordEntry, 'updated_at' | 'takes'>> & TaskRecordIdentity;

export type TaskRecord = Record<string, TaskRecordEntry>;

/** Field order in the file: the original tool's, then ours, then any a studio tool added. */
const FIELD_ORDER: readonly (keyof TaskRecordEntry)[] = [
  'task_id',
  'status',
  'image_path',
  'prompt',
  'video_url',
  'video_path',
  'thumbnail_path',
  'submit_time',
  'complete_time',
  'error_message',
  'episode',
  'shot',
  'take',
  'model',
  'resolution',
  'error_code',
  'task_status',
  'cost',
  'currency',
  'takes',
  'updated_at',
];

const PATH_FIELDS = ['image_path', 'video_path', 'thumbnail_path'] as const;

const keyOrder = new Intl.Collator('en', { numeric: true });

/** The record, or `{}` when the run has none yet. A corrupt file is an InputError naming it. */
export async function readTaskRecord(runDir: string): Promise<TaskRecord> {
  return loadRecord(tasksJsonPath(runDir));
}

/**
 * Creates or updates the entry `key` and returns it once written. Updates that arrive while `tasks.json` is being
 * written are applied together in the next write (each caller still returns only after its own update is on
 * disk): with a thousand shots, a write per update would rewrite the whole file thousands of times.
 */
export function updateTaskRecord(runDir: string, key: string, patch: TaskRecordPatch, now = new Date()): Promise<TaskRecordEntry> {
  const file = tasksJsonPath(runDir);
  return inLockedBatch(file, { key, patch, now }, async (batch) => {
    const realRunDir = await fs.realpath(runDir).catch(() => path.resolve(runDir));
    const record = await loadRecordForUpdate(file);
    const results = batch.map((update): PromiseSettledResult<TaskRecordEntry> => {
      try {
        return { status: 'fulfilled', value: applyUpdate(record, update, realRunDir, runDir) };
      } catch (reason) {
        return { status: 'rejected', reason };
      }
    });
    if (!results.some((r) => r.status === 'fulfilled')) return results;
    try {
      await saveRecord(file, record);
    } catch (reason) {
      // Nothing of the batch is on disk (an update rejected on its own keeps its own error).
      return results.map((r) => (r.status === 'fulfilled' ? { status: 'rejected', reason } : r));
    }
    return results;
  });
}

interface PendingUpdate {
  key: string;
  patch: TaskRecordPatch;
  now: Date;
}

function applyUpdate(record: TaskRecord, { key, patch, now }: PendingUpdate, realRunDir: string, runDir: string): TaskRecordEntry {
  const defined = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<TaskRecordEntry>;
  for (const field of PATH_FIELDS) {
    const value = defined[field];
    if (typeof value === 'string') defined[field] = storedPath(realRunDir, runDir, value);
  }
  const merged: TaskRecordEntry = {
    ...newEntry(patch),
    ...record[key],
    ...defined,
    updated_at: now.toISOString(),
  };
  // A take is a submission: an entry that never reached the provider (an input error) lists none.
  const takes = record[key]?.takes ?? [];
  merged.takes = merged.task_id === null && merged.status !== 'SUCCESS' ? [...takes] : withTake(takes, takeOf(merged));
  // Frozen: the record may be kept for the next update, with each entry's text (serialisedEntry).
  const entry = Object.freeze(ordered(merged));
  record[key] = entry;
  return entry;
}

/**
 * Records that an earlier take's video was moved (under `takes/`) to make room for a newer one.
 */
export async function moveTakeVideo(runDir: string, key: string, fromPath: string, toPath: string): Promise<void> {
  const file = tasksJsonPath(runDir);
  const realRunDir = await fs.realpath(runDir).catch(() => path.resolve(runDir));
  await withFileLock(file, async () => {
    const record = await loadRecordForUpdate(file);
    const entry = record[key];
    if (!entry?.takes) return;
    const from = storedPath(realRunDir, runDir, fromPath);
    const to = storedPath(realRunDir, runDir, toPath);
    record[key] = Object.freeze({ ...entry, takes: entry.takes.map((t) => (t.video_path === from ? { ...t, video_path: to } : t)) });
    await saveRecord(file, record);
  });
}

/** The newest earlier take whose video is at `videoPath` (run-relative or absolute), if any. */
export function takeAt(entry: TaskRecordEntry | undefined, runDir: string, videoPath: string): number | undefined {
  const rel = path.isAbsolute(videoPath) ? relativeToRun(runDir, videoPath) : videoPath;
  return entry?.takes?.filter((t) => t.video_path === rel).at(-1)?.take;
}

function takeOf(entry: TaskRecordEntry): TakeRecord {
  return {
    take: entry.take,
    task_id: entry.task_id,
    status: entry.status,
    submit_time: entry.submit_time,
    complete_time: entry.complete_time,
    video_path: entry.status === 'SUCCESS' ? entry.video_path : null,
    cost: entry.cost ?? null,
    ...(entry.currency ? { currency: entry.currency } : {}),
    error_code: entry.error_code ?? null,
  };
}

/** Replaces the take with the same number, or appends it, keeping takes in order. */
function withTake(takes: readonly TakeRecord[], take: TakeRecord): TakeRecord[] {
  const others = takes.filter((t) => t.take !== take.take);
  return [...others, take].sort((a, b) => a.take - b.take);
}

/** `2025-01-17 10:30:15` in the machine's local time zone, as the original tool wrote times. */
export function formatLocalTime(date: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())} ` +
    `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}`
  );
}

function newEntry(identity: TaskRecordIdentity): Omit<TaskRecordEntry, 'updated_at'> {
  return {
    task_id: null,
    status: 'PENDING',
    image_path: identity.image_path,
    prompt: identity.prompt,
    video_url: null,
    video_path: null,
    thumbnail_path: null,
    submit_time: null,
    complete_time: null,
    error_message: null,
    episode: identity.episode,
    shot: identity.shot,
    take: identity.take,
  };
}

/**
 * What this process last wrote to each tasks.json, and the file's identity right after: while the file on disk
 * is still that one, the next update starts from it instead of parsing the whole file again (at a thousand shots,
 * parsing and re-serialising a megabyte per update was most of the worker's garbage). Any other writer (another
 * worker, a person) replaces or changes the file, and then it is read again. Only used under the file's lock.
 */
const lastWritten = new Map<string, { identity: string; record: TaskRecord }>();

async function loadRecordForUpdate(file: string): Promise<TaskRecord> {
  const cached = lastWritten.get(file);
  // Whatever happens next (an update that throws, a failed write), the cached copy may no longer match the disk.
  lastWritten.delete(file);
  if (cached && cached.identity === (await fileIdentity(file))) return cached.record;
  return loadRecord(file);
}

async function saveRecord(file: string, record: TaskRecord): Promise<void> {
  await writeFileAtomic(file, serialiseTaskRecord(record));
  const identity = await fileIdentity(file);
  if (identity !== undefined) lastWritten.set(file, { identity, record });
}

/** Device, inode, size and modification time: a rename over the file or an edit in place changes it. */
async function fileIdentity(file: string): Promise<string | undefined> {
  try {
    const st = await fs.stat(file, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
  } catch {
    return undefined;
  }
}

async function loadRecord(file: string): Promise<TaskRecord> {
  const data = await readJsonIfExists<unknown>(file);
  if (data === undefined) return {};
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new InputError(
      `${file} is not a task record (expected a JSON object keyed like "Episode-01-001").`,
      'corrupt-json',
      'Repair the file or move it aside, then re-run; i2v never overwrites it while it is unreadable.',
    );
  }
  return data as TaskRecord;
}

/** Absolute paths inside the run become run-relative; both the given and the resolved run path count. */
function storedPath(realRunDir: string, runDir: string, p: string): string {
  if (!path.isAbsolute(p)) return p.split(path.sep).join('/');
  const viaReal = relativeToRun(realRunDir, p);
  return path.isAbsolute(viaReal) ? relativeToRun(path.resolve(runDir), p) : viaReal;
}

function ordered(entry: TaskRecordEntry): TaskRecordEntry {
  const out: Record<string, unknown> = {};
  for (const field of FIELD_ORDER) if (field in entry) out[field] = entry[field];
  for (const field of Object.keys(entry).sort()) if (!(field in out)) out[field] = (entry as unknown as Record<string, unknown>)[field];
  return out as unknown as TaskRecordEntry;
}

/**
 * The record as `JSON.stringify(record, null, 2)` would write it with its keys in shot order, in pieces of about
 * 64 KB: a thousand-shot record is over a megabyte, and one string that size per update is garbage the old
 * generation has to collect.
 */
export function* serialiseTaskRecord(record: TaskRecord): Generator<string> {
  const keys = Object.keys(record).sort(keyOrder.compare);
  if (keys.length === 0) {
    yield '{}\n';
    return;
  }
  let chunk = '{\n';
  for (const [i, key] of keys.entries()) {
    const entry = serialisedEntry(record[key]!);
    chunk += `  ${JSON.stringify(key)}: ${entry}${i < keys.length - 1 ? ',' : ''}\n`;
    if (chunk.length >= SERIALISE_CHUNK_CHARS) {
      yield chunk;
      chunk = '';
    }
  }
  yield `${chunk}}\n`;
}

const SERIALISE_CHUNK_CHARS = 64 * 1024;

/**
 * Each entry's text, indented one level, kept while the entry object lives: an update replaces only its own
 * entry, so the next write re-serialises that one and reuses the rest. Entries written here are frozen.
 */
const entryText = new WeakMap<TaskRecordEntry, string>();

function serialisedEntry(entry: TaskRecordEntry): string {
  let text = entryText.get(entry);
  if (text === undefined) {
    text = JSON.stringify(entry, null, 2).replace(/\n/g, '\n  ');
    entryText.set(entry, text);
  }
  return text;
}
