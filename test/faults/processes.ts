/**
 * Real processes for the fault tests: a Temporal dev server from the pinned CLI binary, and `i2v worker`
 * processes from the built CLI, each of which a test can SIGKILL and start again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { PROJECT_ROOT, resolveTemporalTool } from '../../src/temporal/binaries';

/** Lines a child process printed, kept for the failure report (the last few hundred). */
export class OutputTail {
  readonly lines: string[] = [];
  constructor(private readonly keep = 300) {}

  attach(child: ChildProcess, label: string): void {
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream?.setEncoding('utf8').on('data', (chunk: string) => {
        const parts = (partial + chunk).split('\n');
        partial = parts.pop() ?? '';
        for (const line of parts) this.push(`[${label}] ${line}`);
      });
    }
  }

  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.keep) this.lines.splice(0, this.lines.length - this.keep);
  }
}


export { freePort } from '../../src/temporal/connection';

/** Resolves when `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Checks `check` until it returns true, or throws `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 250): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`Timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}.`);
    await sleep(everyMs);
  }
}

/**
 * The worker processes run `bin/i2v.js`, i.e. dist/. Builds it once when it is missing or older than a source
 * file, and fails with a clear message when the build does.
 */
export async function ensureBuilt(): Promise<void> {
  const entry = path.join(PROJECT_ROOT, 'dist', 'client.js');
  const newestSource = await newestMtime(path.join(PROJECT_ROOT, 'src'));
  if (existsSync(entry) && statSync(entry).mtimeMs >= newestSource) return;
  const child = spawn('npm', ['run', 'build'], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = new OutputTail(60);
  output.attach(child, 'build');
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  if (code !== 0) {
    throw new Error(`dist/ is missing or older than src/, and \`npm run build\` failed (exit ${code}); the worker processes need it:\n${output.lines.join('\n')}`);
  }
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

export interface TemporalServer {
  address: string;
  child: ChildProcess;
  /** SIGKILL, then wait for the process to be gone. */
  kill(): Promise<void>;
}

/** `temporal server start-dev` on a fixed port and SQLite file, so a killed server can be started again on the same state. */
export async function startTemporalServer(port: number, dbFile: string, output: OutputTail): Promise<TemporalServer> {
  const executable = resolveTemporalTool('temporal').executable;
  if (executable.type !== 'existing-path') throw new Error('The Temporal CLI is not installed in .tools/ (run `npm run provision`).');
  const child = spawn(
    executable.path,
    ['server', 'start-dev', '--headless', '--ip', '127.0.0.1', '--port', String(port), '--db-filename', dbFile, '--log-level', 'never'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  output.attach(child, 'temporal');
  const address = `127.0.0.1:${port}`;
  let gone = false;
  void exited(child).then(() => (gone = true));
  await waitFor(
    `the Temporal dev server on ${address}`,
    async () => {
      if (gone) throw new Error(`The Temporal dev server exited (code ${child.exitCode}, signal ${child.signalCode}):\n${output.lines.slice(-30).join('\n')}`);
      return canConnect(address);
    },
    60_000,
  );
  return {
    address,
    child,
    kill: async () => {
      child.kill('SIGKILL');
      await exited(child);
    },
  };
}

export async function canConnect(address: string): Promise<boolean> {
  try {
    const connection = await Connection.connect({ address, connectTimeout: '1 second' });
    try {
      await connection.workflowService.getSystemInfo({});
      return true;
    } finally {
      await connection.close();
    }
  } catch {
    return false;
  }
}

export interface WorkerProcess {
  child: ChildProcess;
  /** Resolves once the worker has bundled its workflows and started polling (it prints "Worker polling"). */
  ready: Promise<void>;
  exited: Promise<void>;
}

/** `i2v worker --provider emulator --base-url <baseUrl>` against `address`, as a user would start one. */
export function startWorkerProcess(address: string, baseUrl: string, output: OutputTail, label: string, env: NodeJS.ProcessEnv = {}): WorkerProcess {
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'i2v.js'), 'worker', '--provider', 'emulator', '--base-url', baseUrl], {
    env: { ...process.env, ...env, TEMPORAL_ADDRESS: address },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  output.attach(child, label);
  const done = exited(child);
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer | string) => {
      if (String(chunk).includes('Worker polling')) resolve();
    });
    void done.then(() => reject(new Error(`${label} exited before it was ready (code ${child.exitCode}, signal ${child.signalCode})`)));
  });
  ready.catch(() => undefined);
  return { child, ready, exited: done };
}
