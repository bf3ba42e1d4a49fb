/**
 * Nothing secret and nothing large leaks: a small episode (with retries, a moderation block, a rejected submit, a cut
 * and an expired download along the way) runs through `i2v run`'s code path on a dev server with a distinctive
 * API key, while every log is captured: the Temporal Runtime's (SDK and core), this process's console, `run`'s
 * own output and the emulator's request log. Then every workflow history of the run is exported with its
 * payloads decoded, and none of it may contain the key, image data (`data:image/`) or the base64 of any image
 * that was sent.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { format } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { temporal as proto } from '@temporalio/proto';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { runCommand } from '../../src/cli/run';
import type { RunSettings } from '../../src/cli/plan';
import { DEFAULT_GENERATION, providerConfig } from '../../src/config';
import { startEmulator, type Emulator } from '../../src/emulator';
import { preparedCacheDir, videosDir } from '../../src/runs/paths';
import type { TemporalHandle } from '../../src/temporal/connection';
import { makeRunFolder } from '../helpers/runFolder';
import { devServerEnv } from '../helpers/temporal';
import { waitFor } from './processes';

// Installed before any test code runs (no module calls ensureRuntime() when imported): the Runtime can be installed
// once per process, and ensureRuntime() keeps this one, which keeps every log line (core logs forwarded too).
const runtimeLog: string[] = [];
Runtime.install({
  logger: new DefaultLogger('TRACE', (entry) => runtimeLog.push(`${entry.level} ${entry.message} ${safeJson(entry.meta)}`)),
  telemetryOptions: { logging: { filter: { core: 'DEBUG', other: 'DEBUG' }, forward: {} } },
});

const SECRET = `sk-SECRET-${randomBytes(12).toString('hex')}`;
const MARKER = `灯塔-${randomBytes(4).toString('hex')}`;

const consoleLog: string[] = [];
const emulatorLog: string[] = [];
const runOutput: string[] = [];
const restore: Array<() => void> = [];

/** Keeps a copy of everything this process prints, through console or straight to stdout/stderr. */
function captureConsole(): void {
  for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const) {
    const original = console[method];
    console[method] = (...args: unknown[]) => {
      consoleLog.push(format(...args));
      original.apply(console, args);
    };
    restore.push(() => (console[method] = original));
  }
  for (const stream of [process.stdout, process.stderr]) {
    const original = stream.write;
    stream.write = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]) {
      consoleLog.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
      return (original as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof stream.write;
    restore.push(() => (stream.write = original));
  }
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? '';
  } catch {
    return String(value);
  }
}

/** A history as JSON, with every bytes field (payload data, failure details, search attributes) decoded as UTF-8. */
function historyText(history: proto.api.history.v1.IHistory): string {
  const plain = proto.api.history.v1.History.toObject(proto.api.history.v1.History.fromObject(history), { longs: String, enums: String });
  return JSON.stringify(plain, function (this: Record<string, unknown>, key: string, value: unknown) {
    const raw = this[key];
    return raw instanceof Uint8Array ? Buffer.from(raw).toString('utf8') : value;
  });
}

let env: TestWorkflowEnvironment;
let emulator: Emulator;

beforeAll(async () => {
  captureConsole();
  [env, emulator] = await Promise.all([
    devServerEnv(),
    startEmulator({ apiKey: SECRET, pendingMs: 100, runningMs: 400, videoSeconds: 1, log: (line) => emulatorLog.push(line) }),
  ]);
});

afterAll(async () => {
  await env?.teardown();
  await emulator?.close();
  for (const undo of restore.splice(0).reverse()) undo();
});

describe('secrets and image data', () => {
  it('appear in no log and no workflow history of a run', async () => {
    const runDir = await makeRunFolder([
      { episode: 1, shot: 1, prompt: `${MARKER} 镜头缓慢推进` },
      { episode: 1, shot: 2, prompt: '人物转身 [emulator:fail=DataInspectionFailed]' },
      { episode: 1, shot: 3, prompt: '雨夜街道 [emulator:reject=InvalidParameter]' },
      { episode: 1, shot: 4, prompt: '云层流动', width: 720, height: 1280 },
      { episode: 2, shot: 1, prompt: '夜色降临' },
    ]);
    // Along the way: a retried 5xx submit, a reset status check, an expired and a truncated download.
    emulator.setFaults({ serverErrorSubmits: 1, resetQueries: 1, expireVideoUrls: 1, truncateDownloads: 1 });
    const temporal: TemporalHandle = {
      client: env.client, nativeConnection: env.nativeConnection, address: env.address, namespace: 'default', startedServer: false, searchAttributes: true,
      close: async () => undefined,
    };
    const settings: RunSettings = { generation: { ...DEFAULT_GENERATION, resolution: '480P' }, deadlineSeconds: 600, poll: { initialSeconds: 0.5, factor: 1.5, maxSeconds: 2 }, maxInFlight: 2 };
    const out = new Writable({
      write: (chunk: Buffer, _enc, done) => {
        runOutput.push(chunk.toString('utf8'));
        done();
      },
    }) as unknown as NodeJS.WriteStream;
    const provider = providerConfig('emulator', { baseUrl: emulator.baseUrl }, { I2V_EMULATOR_API_KEY: SECRET });
    const summary = await runCommand(runDir, { provider, settings, temporal, out, refreshMs: 200 });
    expect(summary).toMatchObject({ succeeded: 3, failed: 2 });

    // Every workflow of the run (the episodes and each shot take), once visibility has caught up.
    const takes = summary.results.flatMap((r) => r.shots).reduce((n, s) => n + Math.max(1, s.take), 0);
    const ids = new Set<string>();
    await waitFor(`${2 + takes} workflows in the visibility store`, async () => {
      for await (const wf of env.client.workflow.list()) ids.add(`${wf.workflowId}\n${wf.runId}`);
      return ids.size >= 2 + takes;
    }, 20_000, 300);
    const histories: string[] = [];
    for (const id of ids) {
      const [workflowId, runId] = id.split('\n') as [string, string];
      histories.push(historyText(await env.client.workflow.getHandle(workflowId, runId).fetchHistory()));
    }

    // Positive controls: the export decodes payloads (a prompt is readable), and the images searched for below are
    // exactly the bytes the provider received (inputs sent as they are, or prepared copies), so a leaked data URL
    // would contain their base64.
    expect(histories.join('\n')).toContain(MARKER);
    const preparedDir = preparedCacheDir(summary.plan.runDir);
    const prepared = await Promise.all((await readdir(preparedDir).catch(() => [])).map((f) => readFile(path.join(preparedDir, f))));
    const inputs = await Promise.all(summary.plan.episodes.flatMap((e) => e.shots).map((s) => readFile(s.imagePath)));
    const sent = new Set(emulator.ledger().submissions.map((s) => s.imageSha256));
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect([...sent].every((h) => [...prepared, ...inputs].some((b) => sha(b) === h))).toBe(true);
    const imagePrefixes = [...prepared, ...inputs].map((b) => b.subarray(0, 48).toString('base64'));

    const runFiles = await readRunFiles(videosDir(summary.plan.runDir));
    const sources: Record<string, string> = {
      'workflow histories': histories.join('\n'),
      'Temporal Runtime log': runtimeLog.join('\n'),
      'process console': consoleLog.join(''),
      '`i2v run` output': runOutput.join(''),
      'emulator request log': emulatorLog.join('\n'),
    };
    expect(runtimeLog.length, 'the Runtime logger captured nothing').toBeGreaterThan(0);
    console.warn('secret scan: console capture check');
    expect(consoleLog.join('')).toContain('secret scan: console capture check');
    expect(emulatorLog.length).toBeGreaterThan(0);
    const leaks: string[] = [];
    for (const [name, text] of Object.entries({ ...sources, ...runFiles })) {
      if (text.includes(SECRET)) leaks.push(`${name}: the API key`);
      if (name in runFiles) continue; // videos and thumbnails are images by nature; only the key is looked for there
      if (/data:image\//i.test(text)) leaks.push(`${name}: a data:image/ URL`);
      for (const prefix of imagePrefixes) if (text.includes(prefix)) leaks.push(`${name}: base64 image data (${prefix.slice(0, 16)}…)`);
    }
    console.log(
      `secret scan: ${histories.length} histories (${Math.round(sources['workflow histories']!.length / 1024)} KiB), ${runtimeLog.length} Runtime log lines, ` +
        `${consoleLog.length} console writes, ${emulatorLog.length} emulator log lines, ${Object.keys(runFiles).length} run files: ${leaks.length ? leaks.join('; ') : 'clean'}`,
    );
    expect(leaks).toEqual([]);
  });
});

/** Every file under 08_generated_videos (tasks.json, the journal, prepared images, videos), as latin1 text. */
async function readRunFiles(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    files[`run folder ${path.relative(dir, file)}`] = (await readFile(file)).toString('latin1');
  }
  return files;
}
