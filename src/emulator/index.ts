/**
 * The provider emulator: a faithful local HTTP server of the Wan image-to-video API that renders real MP4s
 * and injects faults. Used by tests, the demo and dry runs. It shares only the wire types with the provider
 * client (src/provider/types.ts), never its logic, so a bug in one is caught by the other.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DEFAULTS } from '../config';
import { FaultSwitches, type EmulatorFaults } from './faults';
import { duplicateSubmissions, LedgerBook, type Ledger, type SubmissionGroup } from './ledger';
import { Renderer, resolveFfmpegPath } from './render';
import { createRequestListener } from './server';
import { VideoUrlSigner } from './signing';
import { TaskStore } from './tasks';

export type { EmulatorFaults } from './faults';
export { DEFAULT_FAULTS } from './faults';
export type { Ledger, LedgerSubmission, SubmissionGroup } from './ledger';
export { duplicateSubmissions, groupSubmissions } from './ledger';

export interface EmulatorOptions {
  /** Default '127.0.0.1'; other addresses only when asked. */
  host?: string;
  /** Default 0: a random free port. */
  port?: number;
  /** Default DEFAULTS.emulatorApiKey. */
  apiKey?: string;
  /** Time in PENDING after submit; default 1000. */
  pendingMs?: number;
  /** Time in RUNNING before the outcome; default 4000 (a task also stays RUNNING until its MP4 is rendered). */
  runningMs?: number;
  /** Each task stays RUNNING a random extra below this many ms (default 0), so tasks finish out of order. */
  runningJitterMs?: number;
  /** Source of that randomness, in [0, 1) (default Math.random); a seeded one makes a run reproducible. */
  random?: () => number;
  /** Draws each task's RUNNING time in ms, replacing runningMs and runningJitterMs (e.g. the benchmark's latency distribution). */
  runningMsSampler?: () => number;
  /**
   * Render at the lowest CPU priority. The rendering stands for the provider's own compute, which a real run does
   * not share with the pipeline; on one machine (the bench), this keeps it to CPU the pipeline leaves idle.
   */
  renderAtLowPriority?: boolean;
  /** Length of every rendered MP4; default the request's parameters.duration, else the model's default (5). */
  videoSeconds?: number;
  /** Default 30. */
  fps?: number;
  /** Emulate DashScope direct: submits without `X-DashScope-Async: enable` get 403 AccessDenied. */
  requireAsyncHeader?: boolean;
  /** After this long from submission a task reads as UNKNOWN; video URLs stay valid this long after the end. Default 24 h. */
  taskTtlMs?: number;
  /** Default: FFMPEG_PATH, else the @ffmpeg-installer/ffmpeg binary. */
  ffmpegPath?: string;
  /** Where staged images and rendered videos go; default a fresh temp dir, removed on close(). A given dir is kept. */
  workDir?: string;
  /** Appends one JSON line per accepted submission and reloads them on start, so paid counts survive restarts. */
  ledgerFile?: string;
  faults?: Partial<EmulatorFaults>;
  /** One line per request (method, path, status, time); never the Authorization header or image data. */
  log?: (line: string) => void;
}

export interface Emulator {
  /** e.g. 'http://127.0.0.1:41234/api/v1'. */
  baseUrl: string;
  /** e.g. 'http://127.0.0.1:41234'. */
  origin: string;
  /** Where staged images and rendered videos live while the emulator runs. */
  workDir: string;
  /** A snapshot copy. */
  ledger(): Ledger;
  /**
   * Accepted submissions of the same image and prompt beyond `allowed(group)` (default 1): paid twice. Pass the
   * number of takes a shot was expected to make when it may legitimately have several.
   */
  duplicates(allowed?: (group: SubmissionGroup) => number): SubmissionGroup[];
  setFaults(f: Partial<EmulatorFaults>): void;
  /** Stops listening, kills running ffmpeg processes and removes the temp workDir (if the emulator made it). */
  close(): Promise<void>;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** Two renders at a time, two threads each: enough on a laptop, and leaves the pipeline room on a 2-core CI box. */
const RENDER_CONCURRENCY = 2;

export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const host = options.host ?? '127.0.0.1';
  const ttlMs = options.taskTtlMs ?? DAY_MS;
  const ownsWorkDir = options.workDir === undefined;
  const workDir = options.workDir ?? (await mkdtemp(path.join(tmpdir(), 'i2v-emulator-')));
  try {
    if (!ownsWorkDir) await mkdir(workDir, { recursive: true });
    const clock = Date.now;
    const faults = new FaultSwitches(options.faults);
    const ledger = await LedgerBook.open(options.ledgerFile);
    const renderer = new Renderer(await resolveFfmpegPath(options.ffmpegPath), workDir, RENDER_CONCURRENCY, options.renderAtLowPriority);
    let origin = '';
    const server = createServer(
      createRequestListener({
        apiKey: options.apiKey ?? DEFAULTS.emulatorApiKey,
        requireAsyncHeader: options.requireAsyncHeader ?? false,
        videoSeconds: options.videoSeconds,
        fps: options.fps ?? 30,
        clock,
        tasks: new TaskStore(clock, {
          pendingMs: options.pendingMs ?? 1000,
          runningMs: options.runningMs ?? 4000,
          runningJitterMs: options.runningJitterMs,
          random: options.random,
          runningMsSampler: options.runningMsSampler,
          ttlMs,
        }),
        faults,
        ledger,
        renderer,
        signer: new VideoUrlSigner(ttlMs),
        origin: () => origin,
        log: options.log,
      }),
    );
    const port = await listen(server, options.port ?? 0, host);
    origin = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

    let closing: Promise<void> | undefined;
    const close = async (): Promise<void> => {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await renderer.close();
      await stopped;
      if (ownsWorkDir) await rm(workDir, { recursive: true, force: true });
    };
    return {
      baseUrl: `${origin}/api/v1`,
      origin,
      workDir,
      ledger: () => ledger.snapshot(),
      duplicates: (allowed) => duplicateSubmissions(ledger.snapshot().submissions, allowed),
      setFaults: (f) => faults.set(f),
      close: () => (closing ??= close()),
    };
  } catch (err) {
    if (ownsWorkDir) await rm(workDir, { recursive: true, force: true });
    throw err;
  }
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
