/**
 * How the CLI reaches Temporal, the Temporal way: environment variables (`TEMPORAL_ADDRESS`,
 * `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS_*`) and profiles of the Temporal config file
 * (`TEMPORAL_PROFILE`, `TEMPORAL_CONFIG_FILE`), read by @temporalio/envconfig. When none of that names a server,
 * the embedded dev server on a known local port is used, reusing one that already runs there (`i2v server`,
 * another `i2v run`) or starting it. The embedded server keeps its state in SQLite, so re-running resumes.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { NativeConnection, type NativeConnectionOptions } from '@temporalio/worker';
import { ConfigError } from '../errors';
import { resolveTemporalTool } from './binaries';
import { ensureRuntime } from './runtime';
import { SEARCH_ATTRIBUTES } from '../workflows/searchAttributes';
import { temporal } from '@temporalio/proto';

export interface EmbeddedServerOptions {
  /** Folder for the SQLite database. */
  stateDir: string;
  ip: string;
  /** gRPC port; 0 picks a free one. */
  port: number;
  /** Web UI port; 0 disables the UI. */
  uiPort: number;
}

export interface TemporalHandle {
  client: Client;
  /** For workers in this process. */
  nativeConnection: NativeConnection;
  address: string;
  namespace: string;
  /** Web UI base URL when known. */
  uiUrl?: string;
  /** True when this process started the server (it stops when this process closes it). */
  startedServer: boolean;
  /** Our custom search attributes are registered, so workflows may set them. */
  searchAttributes: boolean;
  close(): Promise<void>;
}

type Env = Record<string, string | undefined>;

export function embeddedServerOptions(env: Env = process.env): EmbeddedServerOptions {
  const stateHome = env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return {
    stateDir: env.I2V_STATE_DIR || path.join(stateHome, 'i2v-pipeline'),
    ip: '127.0.0.1',
    port: Number(env.I2V_TEMPORAL_PORT || 7233),
    uiPort: Number(env.I2V_TEMPORAL_UI_PORT || 8233),
  };
}

export async function connectTemporal(env: Env = process.env, embedded = embeddedServerOptions(env)): Promise<TemporalHandle> {
  ensureRuntime();
  const configured = configuredConnection(env);
  if (configured) return connectExisting(configured.options, configured.namespace, env.I2V_TEMPORAL_UI_URL);
  const namespace = env.TEMPORAL_NAMESPACE || 'default';
  const address = `${embedded.ip}:${embedded.port}`;
  const uiUrl = embedded.uiPort ? `http://localhost:${embedded.uiPort}` : undefined;
  if (embedded.port && (await isTemporalServing(address))) return connectExisting({ address }, namespace, uiUrl);
  return startEmbeddedServer(embedded, namespace);
}

/** A server named by the environment or a config profile, if any (TLS, API key and metadata included). */
export function configuredConnection(env: Env = process.env): { options: NativeConnectionOptions; namespace: string } | undefined {
  const overrideEnvVars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => !!e[1]));
  let config: ReturnType<typeof loadClientConnectConfig>;
  try {
    config = loadClientConnectConfig({ profile: env.TEMPORAL_PROFILE, overrideEnvVars });
  } catch (err) {
    throw new ConfigError(`Cannot read the Temporal connection config: ${(err as Error).message}`, 'Check TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE and the TEMPORAL_* variables.');
  }
  if (!config.connectionOptions.address) return undefined;
  return { options: config.connectionOptions, namespace: config.namespace || env.TEMPORAL_NAMESPACE || 'default' };
}

/**
 * Starts the Temporal CLI dev server (SQLite-backed, with the Web UI) from the pinned local binary, in its own
 * process group: a Ctrl-C in the terminal reaches only `i2v`, which then stops its worker first and the server
 * last, so in-flight activities are reported before the server goes away.
 */
export async function startEmbeddedServer(opts: EmbeddedServerOptions, namespace = 'default'): Promise<TemporalHandle> {
  ensureRuntime();
  await mkdir(opts.stateDir, { recursive: true });
  const { executable } = resolveTemporalTool('temporal');
  if (executable.type !== 'existing-path') {
    throw new ConfigError('The Temporal CLI is not installed.', 'Run `npm run provision` (or `npm ci`), set TEMPORAL_CLI_PATH, or set TEMPORAL_ADDRESS to use another server.');
  }
  await stopAbandonedServer(opts.stateDir);
  const port = opts.port || (await freePort(opts.ip));
  const args = [
    'server', 'start-dev', '--ip', opts.ip, '--port', String(port), '--db-filename', path.join(opts.stateDir, 'temporal.db'),
    // The dev server's start-up chatter is noise to users; I2V_TEMPORAL_LOG_LEVEL=debug shows it.
    '--log-level', process.env.I2V_TEMPORAL_LOG_LEVEL === 'debug' ? 'info' : 'error',
    ...(opts.uiPort ? ['--ui-port', String(opts.uiPort), '--ui-disable-news-fetch'] : ['--headless']),
    ...(namespace === 'default' ? [] : ['--namespace', namespace]),
    ...SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=${key.type === 'INT' ? 'Int' : 'Keyword'}`]),
    // One partition per task queue, so the submit queue's rate limit is the whole limit (it applies per partition).
    '--dynamic-config-value', 'matching.numTaskqueueReadPartitions=1',
    '--dynamic-config-value', 'matching.numTaskqueueWritePartitions=1',
    // Write-ahead logging: as durable as SQLite's default journal, with fewer writes per transaction; every
    // workflow and activity step is one, and this server's own throughput was what held back starting and
    // submitting a large episode (npm run bench).
    '--sqlite-pragma', 'journal_mode=wal',
  ];
  const server = spawn(executable.path, args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  const pidFile = path.join(opts.stateDir, SERVER_PID_FILE);
  if (server.pid) await writeFile(pidFile, String(server.pid));
  let stderr = '';
  server.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
  // Its own process group keeps it clear of the terminal's Ctrl-C, so it must not outlive us by accident
  // (a forced exit, a crash): stop it when this process exits, whatever the reason.
  const stopOnExit = () => server.kill('SIGTERM');
  process.once('exit', stopOnExit);
  void exited.then(() => process.off('exit', stopOnExit));
  const address = `${opts.ip}:${port}`;
  const stop = async (): Promise<void> => {
    if (server.exitCode !== null || server.signalCode !== null) return;
    server.kill('SIGTERM');
    const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    await rm(pidFile, { force: true });
  };
  try {
    await waitUntilServing(address, exited, () => stderr);
    const handle = await connectExisting({ address }, namespace, opts.uiPort ? `http://localhost:${opts.uiPort}` : undefined);
    return {
      ...handle,
      startedServer: true,
      close: async () => {
        await handle.close();
        await stop();
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

const SERVER_PID_FILE = 'server.pid';

/**
 * A server left running on this state folder by an `i2v` that was killed or forced to exit still holds the
 * database: stop it (it is not serving anyone: a live one on the configured port would have been reused).
 */
async function stopAbandonedServer(stateDir: string): Promise<void> {
  const pid = Number(await readFile(path.join(stateDir, SERVER_PID_FILE), 'utf8').catch(() => ''));
  if (!pid || !isAlive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls until the server answers, failing early (with its last words) if it exits. */
async function waitUntilServing(address: string, exited: Promise<number | null>, stderr: () => string): Promise<void> {
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) {
      throw new ConfigError(`The embedded Temporal server exited (code ${exitCode}): ${stderr().trim().split('\n').slice(-3).join(' | ')}`, 'Is the port in use? Set I2V_TEMPORAL_PORT / I2V_TEMPORAL_UI_PORT, or I2V_TEMPORAL_LOG_LEVEL=debug for details.');
    }
    if (await isTemporalServing(address)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new ConfigError(`The embedded Temporal server did not answer at ${address} within 60 s.`, 'Set I2V_TEMPORAL_LOG_LEVEL=debug to see its log.');
}

/** A TCP port free on `host` right now. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

async function connectExisting(options: NativeConnectionOptions, namespace: string, uiUrl: string | undefined): Promise<TemporalHandle> {
  const address = options.address ?? 'localhost:7233';
  let connection: Connection;
  let nativeConnection: NativeConnection;
  try {
    connection = await Connection.connect({ address, tls: options.tls, apiKey: options.apiKey, metadata: options.metadata, connectTimeout: '5 seconds' });
    nativeConnection = await NativeConnection.connect(options);
  } catch (err) {
    throw new ConfigError(`Cannot reach Temporal at ${address}: ${(err as Error).message}`, 'Start it, or fix TEMPORAL_ADDRESS / your Temporal profile (unset both to use the embedded server).');
  }
  return {
    client: new Client({ connection, namespace }),
    nativeConnection,
    address,
    namespace,
    uiUrl,
    startedServer: false,
    searchAttributes: await ensureSearchAttributes(connection, namespace),
    close: async () => {
      await nativeConnection.close();
      await connection.close();
    },
  };
}

/**
 * Registers our search attributes when missing (self-hosted and dev servers allow it). Where that is refused
 * (e.g. Temporal Cloud, or no operator permission) everything still works, without them; the README says how
 * to add them by hand.
 */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<boolean> {
  try {
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
    const missing = SEARCH_ATTRIBUTES.filter((key) => !(key.name in (customAttributes ?? {})));
    if (missing.length === 0) return true;
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((key) => [key.name, indexedValueType(key.type)])),
    });
    return true;
  } catch (err) {
    console.warn(`[i2v] Search attributes not available on this server (${(err as Error).message}); the Web UI cannot filter by run. See README "Temporal".`);
    return false;
  }
}

function indexedValueType(type: string): temporal.api.enums.v1.IndexedValueType {
  return type === 'INT' ? temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT : temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
}

/** The Web UI's workflow list filtered to one run. */
export function runUiUrl(uiUrl: string, namespace: string, runId: string): string {
  return `${uiUrl}/namespaces/${encodeURIComponent(namespace)}/workflows?query=${encodeURIComponent(`I2vRun="${runId}"`)}`;
}

async function isTemporalServing(address: string): Promise<boolean> {
  try {
    const connection = await Connection.connect({ address, connectTimeout: '1 second' });
    await connection.close();
    return true;
  } catch {
    return false;
  }
}

/** The Web UI page of one workflow. */
export function workflowUiUrl(uiUrl: string, namespace: string, workflowId: string): string {
  return `${uiUrl}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
