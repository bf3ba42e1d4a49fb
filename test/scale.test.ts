/**
 * Several `i2v worker` processes against one Temporal server: a 30-shot episode survives a worker SIGKILLed
 * mid-run with every shot done once, the submit rate limit holds across workers, and the metrics endpoint
 * agrees with the provider's ledger.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_GENERATION, providerConfig } from '../src/config';
import { startEmulator, type Emulator } from '../src/emulator';
import type { RunSettings } from '../src/cli/plan';
import { runCommand } from '../src/cli/run';
import { probeVideo } from '../src/media/video';
import { readTaskRecord } from '../src/runs/taskRecord';
import { freePort, startEmbeddedServer, type TemporalHandle } from '../src/temporal/connection';
import { DEFAULT_ACTIVITY_QUEUES } from '../src/worker';
import { DEFAULT_POLL_SCHEDULE } from '../src/workflows/polling';
import { makeRunFolder } from './helpers/runFolder';
import { scratchDir } from './helpers/scratch';

const bin = path.join(__dirname, '..', 'bin', 'i2v.js');
let temporal: TemporalHandle;
let emulator: Emulator;
const workers = new Set<ChildProcess>();

beforeAll(async () => {
  const stateDir = await scratchDir('i2v-scale-');
  [temporal, emulator] = await Promise.all([
    startEmbeddedServer({ stateDir, ip: '127.0.0.1', port: 0, uiPort: 0 }),
    startEmulator({ pendingMs: 200, runningMs: 1200, videoSeconds: 1 }),
  ]);
});

afterAll(async () => {
  for (const w of workers) w.kill('SIGKILL');
  await temporal?.close();
  await emulator?.close();
});

function startWorker(extra: string[] = []): ChildProcess {
  const child = spawn(process.execPath, [bin, 'worker', '--provider', 'emulator', '--base-url', emulator.baseUrl, '--submit-rate', '2', ...extra], {
    env: { ...process.env, TEMPORAL_ADDRESS: temporal.address },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  workers.add(child);
  child.once('exit', () => workers.delete(child));
  return child;
}

const settings: RunSettings = {
  generation: { ...DEFAULT_GENERATION, resolution: '480P' },
  deadlineSeconds: 600,
  poll: { ...DEFAULT_POLL_SCHEDULE, initialSeconds: 0.5, maxSeconds: 2, denseSeconds: 0.5 },
  maxInFlight: 10,
  queues: DEFAULT_ACTIVITY_QUEUES,
};
const quiet = () => new Writable({ write: (_c, _e, done) => done() }) as unknown as NodeJS.WriteStream;

async function until(condition: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('many workers', () => {
  it('finishes a 30-shot episode once per shot across three workers, one of them SIGKILLed mid-run, within the submit rate', async () => {
    const runDir = await makeRunFolder(Array.from({ length: 30 }, (_, i) => ({ episode: 1, shot: i + 1, prompt: `第 ${i + 1} 个镜头`, width: 480, height: 360 })));
    const before = emulator.ledger().submissions.length;
    const [victim] = [startWorker(), startWorker(), startWorker()];
    const run = runCommand(runDir, { provider: providerConfig('emulator', { baseUrl: emulator.baseUrl }), settings, temporal, out: quiet(), worker: false });

    // Kill a worker mid-run, just after a submission was recorded (the rate limit leaves ≥ 0.5 s to the next).
    await until(() => emulator.ledger().submissions.length - before >= 8, 'eight submissions');
    await new Promise((r) => setTimeout(r, 150));
    victim!.kill('SIGKILL');

    const summary = await run;
    for (const w of workers) w.kill('SIGTERM');
    expect(summary).toMatchObject({ succeeded: 30, failed: 0 });
    const submissions = emulator.ledger().submissions.slice(before);
    expect(submissions).toHaveLength(30);
    expect(new Set(submissions.map((s) => s.prompt)).size).toBe(30);

    // The server enforced the cluster-wide limit: no second with more than 2 submissions.
    const perSecond = new Map<number, number>();
    for (const s of submissions) {
      const second = Math.floor(Date.parse(s.at) / 1000);
      perSecond.set(second, (perSecond.get(second) ?? 0) + 1);
    }
    const distribution = [...perSecond.entries()].map(([second, n]) => `${second}:${n}`).join(' ');
    expect(Math.max(...perSecond.values()), `submissions per second: ${distribution}`).toBeLessThanOrEqual(2);

    const records = await readTaskRecord(runDir);
    expect(Object.values(records).filter((r) => r.status === 'SUCCESS')).toHaveLength(30);
    for (const r of Object.values(records)) expect((await probeVideo(path.join(summary.plan.runDir, r.video_path!))).durationSeconds).toBeGreaterThan(0);
  }, 240_000);

  it('serves i2v counters on the metrics endpoint that match the provider ledger', async () => {
    const port = await freePort();
    const worker = startWorker(['--metrics-port', String(port)]);
    const runDir = await makeRunFolder(Array.from({ length: 4 }, (_, i) => ({ episode: 1, shot: i + 1, prompt: `指标 ${i + 1}` })));
    const before = emulator.ledger();
    const summary = await runCommand(runDir, { provider: providerConfig('emulator', { baseUrl: emulator.baseUrl }), settings, temporal, out: quiet(), worker: false });
    expect(summary.succeeded).toBe(4);
    const after = emulator.ledger();

    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const total = (name: string) => [...text.matchAll(new RegExp(`^${name}(?:_total)?(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
    expect(total('i2v_submissions')).toBe(after.submissions.length - before.submissions.length);
    expect(total('i2v_polls')).toBe(after.gets - before.gets);
    expect(total('i2v_downloads')).toBe(4);
    expect(total('i2v_spend_cents')).toBe(4 * 10); // 1 s at ¥0.10/s (480P) each
    expect(text).toMatch(/^temporal_/m); // Temporal's own metrics on the same endpoint
    worker.kill('SIGTERM');
  }, 120_000);
});
