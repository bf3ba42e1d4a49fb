/**
 * Crash-safe file writes: readers see the old content or the new content, never a torn file.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { InputError } from './errors';

/**
 * Writes `data` to a temp file beside `filePath`, fsyncs it, renames it over `filePath` and fsyncs the
 * directory (best effort: not every platform can), creating parent folders as needed. `data` may be given in
 * pieces (an iterable of strings), so a large file need not be one string in memory.
 */
export async function writeFileAtomic(filePath: string, data: string | Uint8Array | Iterable<string>): Promise<void> {
  await produceFileAtomic(filePath, (tmp) => fs.writeFile(tmp, data, { flag: 'wx' }));
}

/**
 * Replaces `filePath` by rename, without fsync: readers still see the old content or the new, never a torn
 * file, but a power cut may leave the old content or an empty file. Only for state worth nothing after a
 * restart (the submission pacer's last second); anything a user or a retry relies on uses writeFileAtomic.
 */
export async function replaceFile(filePath: string, data: string): Promise<void> {
  const tmp = tempPathFor(filePath);
  try {
    await fs.writeFile(tmp, data, { flag: 'wx' });
    await fs.rename(tmp, filePath);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/**
 * The same guarantee for a file written by someone else (ffmpeg): `write` is given a temp path beside `filePath`
 * to create, and once it resolves the file is fsynced and renamed over `filePath`. If `write` throws, whatever it
 * left is removed and `filePath` is untouched. Resolves with what `write` resolved with.
 */
export async function produceFileAtomic<T>(filePath: string, write: (tmpPath: string) => Promise<T>): Promise<T> {
  const dir = path.dirname(filePath);
  await fs.mkdir(dir, { recursive: true });
  const tmp = tempPathFor(filePath);
  let result: T;
  try {
    result = await write(tmp);
    await syncFile(tmp);
    await fs.rename(tmp, filePath);
  } catch (err) {
    // Best effort: what went wrong first is the error to report (a sweep removes a temp file left behind).
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
  return result;
}

/**
 * A temp name beside `filePath`: the same directory, so the rename stays on one filesystem; a dot name keeps it
 * out of folder scans; the writer's pid lets a sweep tell an abandoned temp file from one being written
 * (runs/sweep.ts).
 */
function tempPathFor(filePath: string): string {
  return path.join(path.dirname(filePath), `.${path.basename(filePath)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/**
 * Parsed JSON of `filePath`, or undefined when it does not exist. A file that exists but is not valid JSON
 * is an InputError naming the file (it is left untouched for the user to inspect).
 */
export async function readJsonIfExists<T>(filePath: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await fs.readFile(filePath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text.replace(/^\uFEFF/, '')) as T;
  } catch (err) {
    throw new InputError(
      `${filePath} is not valid JSON (${(err as Error).message}).`,
      'corrupt-json',
      `Repair the file or move it aside, then re-run; i2v never overwrites it while it is unreadable.`,
    );
  }
}

/** Flushes a file someone else wrote (ffmpeg closes its outputs without fsync) to disk. */
export async function syncFile(file: string): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a rename durable. Directories cannot be opened or fsynced on some platforms (Windows); the rename is still atomic. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await fs.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Best effort only.
  }
}

/** `FileHandle.write` may write less than asked; loop until every byte is down. */
export async function writeAll(fh: fs.FileHandle, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await fh.write(data, offset, data.length - offset);
    offset += bytesWritten;
  }
}
