/**
 * How the CLI reaches Temporal: `TEMPORAL_ADDRESS` (and `TEMPORAL_NAMESPACE`) when set; otherwise the
 * embedded dev server on a known local port, reusing one that already runs there (`i2v server`, another
 * `i2v run`) or starting it. The embedded server keeps its state in SQLite, so stopping and re-running resumes.
 */
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection } from '@temporalio/worker';
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
  const namespace = env.TEMPORAL_NAMESPACE || 'default';
  if (env.TEMPORAL_ADDRESS) return connectExisting(env.TEMPORAL_ADDRESS, namespace, undefined);
  const address = `${embedded.ip}:${embedded.port}`;
  const uiUrl = embedded.uiPort ? `http://localhost:${embedded.uiPort}` : undefined;
  if (embedded.port && (await isTemporalServing(address))) return connectExisting(address, namespace, uiUrl);
  return startEmbeddedServer(embedded, namespace);
}

/** Starts the Temporal CLI dev server (SQLite-backed, with the Web UI) from the pinned local binary. */
export async function startEmbeddedServer(opts: EmbeddedServerOptions, namespace = 'default'): Promise<TemporalHandle> {
  ensureRuntime();
  await mkdir(opts.stateDir, { recursive: true });
  const { executable } = resolveTemporalTool('temporal');
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable,
      namespace,
      ip: opts.ip,
      port: opts.port || undefined,
      ui: opts.uiPort > 0,
      uiPort: opts.uiPort || undefined,
      dbFilename: path.join(opts.stateDir, 'temporal.db'),
      searchAttributes: SEARCH_ATTRIBUTES,
      // The dev server's start-up chatter ("frontend not healthy yet") is noise to users; I2V_TEMPORAL_LOG_LEVEL=debug shows it.
      log: { format: 'pretty', level: process.env.I2V_TEMPORAL_LOG_LEVEL === 'debug' ? 'info' : 'never' },
      // Offline-friendly: the Web UI would otherwise try to fetch a newsfeed from the internet.
      extraArgs: ['--ui-disable-news-fetch'],
    },
  });
  return {
    client: env.client,
    nativeConnection: env.nativeConnection,
    address: env.address,
    namespace,
    uiUrl: opts.uiPort > 0 ? `http://localhost:${opts.uiPort}` : undefined,
    startedServer: true,
    searchAttributes: true,
    close: () => env.teardown(),
  };
}

async function connectExisting(address: string, namespace: string, uiUrl: string | undefined): Promise<TemporalHandle> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ address, connectTimeout: '5 seconds' });
  } catch (err) {
    throw new ConfigError(`Cannot reach Temporal at ${address}: ${(err as Error).message}`, 'Start it, fix TEMPORAL_ADDRESS, or unset TEMPORAL_ADDRESS to use the embedded server.');
  }
  const nativeConnection = await NativeConnection.connect({ address });
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
