/**
 * What the emulator was asked to do, for tests and dry-run reports: accepted (paid) submissions plus
 * request counters. With a ledger file, accepted submissions are appended as JSON lines and reloaded
 * on start, so "how many paid submissions" survives emulator restarts (the counters do not).
 */
import { appendFile, readFile } from 'node:fs/promises';

export interface LedgerSubmission {
  taskId: string;
  /** ISO time of acceptance. */
  at: string;
  model: string;
  /** The prompt as submitted. */
  prompt: string;
  imageSha256: string;
  imageBytes: number;
  mime: string;
  width: number;
  height: number;
  resolution: string;
}

export interface Ledger {
  /** Accepted (paid) submissions only. */
  submissions: LedgerSubmission[];
  /** Every POST to the submit path, including rejected ones. */
  posts: number;
  /** Every task GET. */
  gets: number;
  /** Every video GET, including range requests. */
  downloads: number;
}

/** Accepted submissions of the same content: one shot take, or several takes of one shot with an unchanged prompt. */
export interface SubmissionGroup {
  imageSha256: string;
  prompt: string;
  /** In order of acceptance. */
  submissions: LedgerSubmission[];
}

/** Accepted submissions grouped by what was paid for (image content and prompt), in order of first acceptance. */
export function groupSubmissions(submissions: readonly LedgerSubmission[]): SubmissionGroup[] {
  const groups = new Map<string, SubmissionGroup>();
  for (const s of submissions) {
    const key = JSON.stringify([s.imageSha256, s.prompt]);
    const group = groups.get(key) ?? { imageSha256: s.imageSha256, prompt: s.prompt, submissions: [] };
    group.submissions.push({ ...s });
    groups.set(key, group);
  }
  return [...groups.values()];
}

/**
 * Groups paid for more often than `allowed(group)` times (default once): duplicate paid submissions.
 * A shot may legitimately have several takes (an automatic new take after a transient failure, a regenerate
 * with the same prompt), so callers that expect more than one take per shot say how many they expect.
 */
export function duplicateSubmissions(submissions: readonly LedgerSubmission[], allowed: (group: SubmissionGroup) => number = () => 1): SubmissionGroup[] {
  return groupSubmissions(submissions).filter((g) => g.submissions.length > allowed(g));
}

export class LedgerBook {
  private posts = 0;
  private gets = 0;
  private downloads = 0;

  private constructor(
    private readonly file: string | undefined,
    private readonly submissions: LedgerSubmission[],
  ) {}

  static async open(file?: string): Promise<LedgerBook> {
    return new LedgerBook(file, file ? await loadLedgerFile(file) : []);
  }

  countPost(): void {
    this.posts++;
  }

  countGet(): void {
    this.gets++;
  }

  countDownload(): void {
    this.downloads++;
  }

  /** Persists first, so a submission the client was told about is never missing from the file. */
  async recordSubmission(submission: LedgerSubmission): Promise<void> {
    if (this.file) await appendFile(this.file, `${JSON.stringify(submission)}\n`);
    this.submissions.push(submission);
  }

  snapshot(): Ledger {
    return {
      submissions: this.submissions.map((s) => ({ ...s })),
      posts: this.posts,
      gets: this.gets,
      downloads: this.downloads,
    };
  }
}

async function loadLedgerFile(file: string): Promise<LedgerSubmission[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  // Terminate a line cut short by a crash, so the next append starts on a line of its own.
  if (text !== '' && !text.endsWith('\n')) await appendFile(file, '\n');
  const submissions: LedgerSubmission[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      submissions.push(JSON.parse(line) as LedgerSubmission);
    } catch {
      // A line cut short by a crash mid-append: that submission was never acknowledged to a client.
    }
  }
  return submissions;
}
