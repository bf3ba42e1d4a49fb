/**
 * The submission journal: the local, durable memory that makes "at most one paid submission per shot take"
 * hold across activity retries and worker crashes (Temporal runs activities at least once).
 *
 * Protocol for a submitting activity:
 *   1. readSubmission: 'submitted' → do not POST; re-query that task id instead.
 *                      'started'   → a previous attempt may have POSTed and died before learning the task
 *                                    id: the outcome is unknown and the caller decides (fail for a human,
 *                                    or accept a possible second charge).
 *   2. markSubmissionStarted (fsync'd) before the POST.
 *   3. recordSubmission (fsync'd) as soon as the POST returns a task id, or clearSubmissionStarted when the
 *      provider certainly rejected it (nothing was charged, so a later attempt may POST again).
 * One small JSON file per submission key under `08_generated_videos/.i2v/journal/`.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors';
import { readJsonIfExists, writeFileAtomic } from '../atomic';
import { withFileLock } from './lock';
import { journalDir } from './paths';

export interface JournalEntry {
  state: 'started' | 'submitted';
  taskId?: string;
  /** ISO 8601: when the (last) POST was about to be sent. */
  startedAt: string;
  /** ISO 8601: when the provider returned the task id. */
  submittedAt?: string;
  requestId?: string;
}

/** A take already has a different task id: two paid submissions exist and a human should look. */
export class SubmissionConflictError extends Error {
  override readonly name = 'SubmissionConflictError';
  constructor(
    readonly submissionKey: string,
    readonly existingTaskId: string,
    readonly newTaskId: string,
  ) {
    super(`Submission ${submissionKey} is already recorded with task ${existingTaskId}; refusing to record task ${newTaskId}.`);
  }
}

/**
 * The journal file for a submission key such as `demo-1a2b3c4d.Episode-01.Shot-001.take-1`. Characters outside
 * [A-Za-z0-9._-] become `_`, and a hash of the original key is appended when anything was changed, so two
 * different keys never share a file.
 */
export function journalPath(runDir: string, submissionKey: string): string {
  const safe = submissionKey.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
  const needsHash = safe !== submissionKey || safe.length > 150;
  const name = needsHash ? `${safe.slice(0, 150)}-${createHash('sha256').update(submissionKey).digest('hex').slice(0, 8)}` : safe;
  return path.join(journalDir(runDir), `${name}.json`);
}

export async function readSubmission(runDir: string, submissionKey: string): Promise<JournalEntry | undefined> {
  const file = journalPath(runDir, submissionKey);
  const entry = await readJsonIfExists<unknown>(file);
  if (entry === undefined) return undefined;
  if (!isJournalEntry(entry)) {
    throw new InputError(
      `${file} is not a submission journal entry.`,
      'corrupt-json',
      'Check the provider console for a task of this shot, then delete the file and re-run.',
    );
  }
  return entry;
}

/** The journal already has an entry for this take: a task id to re-query, or a POST whose outcome is unknown. */
export class SubmissionExistsError extends Error {
  override readonly name = 'SubmissionExistsError';
  constructor(readonly submissionKey: string, readonly entry: JournalEntry) {
    super(
      entry.state === 'submitted'
        ? `Submission ${submissionKey} already has task ${entry.taskId}; re-query it instead of submitting again.`
        : `Submission ${submissionKey} was already started at ${entry.startedAt}; its outcome is unknown.`,
    );
  }
}

/**
 * Notes (durably) that a POST is about to be sent. Check and mark happen under one lock, so two attempts of the
 * same take can never both go ahead: an existing entry throws SubmissionExistsError, except that a 'started'
 * marker may be replaced when the caller accepts the risk of paying twice (`replaceStarted`).
 */
export async function markSubmissionStarted(runDir: string, submissionKey: string, now = new Date(), opts: { replaceStarted?: boolean } = {}): Promise<JournalEntry> {
  const file = journalPath(runDir, submissionKey);
  return withFileLock(file, async () => {
    const existing = await readSubmission(runDir, submissionKey);
    if (existing && (existing.state === 'submitted' || !opts.replaceStarted)) throw new SubmissionExistsError(submissionKey, existing);
    const entry: JournalEntry = { state: 'started', startedAt: now.toISOString() };
    await writeFileAtomic(file, `${JSON.stringify(entry, null, 2)}\n`);
    return entry;
  });
}

/**
 * Records the task id the provider returned. Idempotent for the same task id; a different one throws
 * SubmissionConflictError and leaves the journal unchanged.
 */
export async function recordSubmission(
  runDir: string,
  submissionKey: string,
  submission: { taskId: string; submittedAt: string; requestId?: string },
): Promise<JournalEntry> {
  const file = journalPath(runDir, submissionKey);
  return withFileLock(file, async () => {
    const existing = await readSubmission(runDir, submissionKey);
    if (existing?.state === 'submitted') {
      if (existing.taskId === submission.taskId) return existing;
      throw new SubmissionConflictError(submissionKey, existing.taskId ?? '(none)', submission.taskId);
    }
    const entry: JournalEntry = {
      state: 'submitted',
      taskId: submission.taskId,
      startedAt: existing?.startedAt ?? submission.submittedAt,
      submittedAt: submission.submittedAt,
      ...(submission.requestId !== undefined ? { requestId: submission.requestId } : {}),
    };
    await writeFileAtomic(file, `${JSON.stringify(entry, null, 2)}\n`);
    return entry;
  });
}

/**
 * Removes a 'started' marker after a POST the provider certainly did not accept (a definite rejection), so
 * the take may be submitted again. A 'submitted' entry is never removed: that task id is paid for.
 */
export async function clearSubmissionStarted(runDir: string, submissionKey: string): Promise<void> {
  const file = journalPath(runDir, submissionKey);
  await withFileLock(file, async () => {
    const existing = await readSubmission(runDir, submissionKey);
    if (existing?.state !== 'started') return;
    await fs.rm(file, { force: true });
  });
}

function isJournalEntry(value: unknown): value is JournalEntry {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  if (typeof v.startedAt !== 'string') return false;
  if (v.state === 'started') return true;
  return v.state === 'submitted' && typeof v.taskId === 'string' && v.taskId !== '';
}
