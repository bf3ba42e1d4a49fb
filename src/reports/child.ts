/**
 * Writing the reports in a short-lived child process. At a thousand shots, building report.xlsx is seconds of
 * synchronous work and some 100 MB of memory (exceljs holds the whole workbook, then the whole zip). In the
 * worker, those seconds would stall every other activity of the process (and their heartbeats), and the memory
 * would stay with the worker long after; in a child, both end with it.
 *
 * Run as a script (`node child.js <runDir>`), it writes both reports and prints one JSON line: the paths, or
 * the error (an InputError keeps its category and fix).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors';

export interface ReportFiles {
  excelPath: string;
  galleryPath: string;
}

type ChildResult = ({ ok: true } & ReportFiles) | { ok: false; name: string; message: string; category?: string; fix?: string };

/** The compiled script: beside this file in dist/, or in dist/ when this runs from the TypeScript sources (tests). */
function childScript(): string | undefined {
  const candidates = [path.join(__dirname, 'child.js'), path.join(__dirname, '..', '..', 'dist', 'reports', 'child.js')];
  return candidates.find((file) => existsSync(file));
}

/**
 * Writes report.xlsx and index.html from a child process (in this one when there is no compiled script, as in
 * a test run without a build). Rejects with the child's error; `signal` stops the child.
 */
export async function writeReportsInChild(runDir: string, signal?: AbortSignal): Promise<ReportFiles> {
  const script = childScript();
  if (!script) return writeReportsHere(runDir);
  const child = spawn(process.execPath, [script, runDir], { stdio: ['ignore', 'pipe', 'pipe'], signal });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  const result = parseResult(stdout);
  if (result?.ok) return { excelPath: result.excelPath, galleryPath: result.galleryPath };
  if (result && result.name === 'InputError') throw new InputError(result.message, result.category ?? 'report', result.fix);
  if (result) throw new Error(result.message);
  throw new Error(`The report process exited with code ${code}${stderr.trim() ? `: ${stderr.trim()}` : ''}`);
}

function parseResult(stdout: string): ChildResult | undefined {
  const last = stdout.trim().split('\n').pop();
  if (!last) return undefined;
  try {
    return JSON.parse(last) as ChildResult;
  } catch {
    return undefined;
  }
}

/** Loaded only where the reports are written: exceljs alone is some 25 MB the worker need not carry. */
async function writeReportsHere(runDir: string): Promise<ReportFiles> {
  const { writeReports } = await import('./index');
  const { excelPath, galleryPath } = await writeReports(runDir);
  return { excelPath, galleryPath };
}

async function main(runDir: string | undefined): Promise<number> {
  if (!runDir) {
    console.error('usage: child.js <runDir>');
    return 2;
  }
  try {
    const { excelPath, galleryPath } = await writeReportsHere(runDir);
    console.log(JSON.stringify({ ok: true, excelPath, galleryPath } satisfies ChildResult));
    return 0;
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const extra = e instanceof InputError ? { category: e.category, fix: e.fix } : {};
    console.log(JSON.stringify({ ok: false, name: e.name, message: e.message, ...extra } satisfies ChildResult));
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv[2]).then((code) => (process.exitCode = code));
}
