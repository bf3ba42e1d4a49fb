/**
 * Temporary folders for tests (run folders, server state, fake tools), removed when the test file ends, so
 * repeated `npm test` runs do not fill the temp folder with images and videos. I2V_KEEP_TEST_FILES=1 keeps them
 * to look at. The removal is registered by test/helpers/cleanup.ts (a setup file of both vitest configs).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const made: string[] = [];

/** A new empty folder under the system temp folder, named `<prefix>XXXXXX`. */
export async function scratchDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Removes every folder made by scratchDir in this test file. */
export async function removeScratchDirs(): Promise<void> {
  if (process.env.I2V_KEEP_TEST_FILES === '1') {
    if (made.length > 0) console.info(`Kept test folders:\n  ${made.join('\n  ')}`);
    return;
  }
  await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true, maxRetries: 3 })));
}

/** Where tests leave pictures for people to look at (screenshots): `test-results/<name>` in the checkout. */
export function artefactPath(name: string): string {
  return path.join(__dirname, '..', '..', 'test-results', name);
}
