/**
 * "Input files are never modified": a snapshot of every file under a run folder's input folders
 * (05_generated_images/, 07_video_prompts/) with its content hash, size and modification time, and an
 * assertion that nothing was changed, added or removed since.
 *
 *   const before = await snapshotInputs(runDir);
 *   await runSomething(runDir);
 *   await assertInputsUnchanged(runDir, before);
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { IMAGES_DIR, PROMPTS_DIR } from '../../src/runs/paths';

export interface InputFileState {
  sha256: string;
  size: number;
  mtimeMs: number;
}

/** Run-relative POSIX path → state, sorted by path; symlinks are followed, as the pipeline follows them. */
export type InputsSnapshot = Record<string, InputFileState>;

export async function snapshotInputs(runDir: string): Promise<InputsSnapshot> {
  const files: Array<[string, InputFileState]> = [];
  const walk = async (dir: string): Promise<void> => {
    let entries: string[];
    try {
      entries = await fs.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of entries) {
      const p = path.join(dir, name);
      const st = await fs.stat(p);
      if (st.isDirectory()) {
        await walk(p);
        continue;
      }
      const data = await fs.readFile(p);
      const rel = path.relative(runDir, p).split(path.sep).join('/');
      files.push([rel, { sha256: createHash('sha256').update(data).digest('hex'), size: st.size, mtimeMs: st.mtimeMs }]);
    }
  };
  await walk(path.join(runDir, IMAGES_DIR));
  await walk(path.join(runDir, PROMPTS_DIR));
  files.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return Object.fromEntries(files);
}

/** Fails, naming the files, if any input file changed (bytes or mtime), appeared or disappeared. */
export async function assertInputsUnchanged(runDir: string, before: InputsSnapshot): Promise<void> {
  expect(await snapshotInputs(runDir), 'input files must never be modified, added or removed').toEqual(before);
}
