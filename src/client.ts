/**
 * The `i2v` command line. Parses flags, wires configuration, and maps every error kind to a clear message
 * and an exit code in one place (a stack trace is a bug).
 */
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DEFAULTS, DEFAULT_GENERATION, parseProviderKind, providerConfig, type GenerationParams, type ProviderConfig } from './config';
import { ConfigError, ExitError, InputError, ProviderError } from './errors';
import type { Resolution } from './provider/types';
import { configuredConnection, connectTemporal, embeddedServerOptions, startEmbeddedServer, type TemporalHandle } from './temporal/connection';
import { createWorker, DEFAULT_ACTIVITY_QUEUES, stopWorker, WORKER_ROLES, type WorkerRole } from './worker';
import { ensureRuntime } from './temporal/runtime';
import { DEFAULT_POLL_SCHEDULE } from './workflows/polling';
import type { RunSettings } from './cli/plan';
import type { GenerationEstimate } from './workflows/types';
import { runCommand, RunInterrupted } from './cli/run';
import { statusCommand } from './cli/status';
import { requestRegeneration, waitForShot } from './cli/regenerate';
import { startEmulator } from './emulator';
import { validateCommand } from './cli/validate';
import { assembleCommand } from './cli/assemble';
import { doctorCommand } from './cli/doctor';
import { DEFAULT_IMAGE_LIMITS } from './media/image';
import { PROJECT_ROOT } from './temporal/binaries';

interface ProviderFlags {
  provider: string;
  baseUrl?: string;
}
interface GenerationFlags {
  model: string;
  resolution: string;
  promptExtend: boolean;
  maxInFlight: number;
  maxInFlightRun?: number;
  deadlineMinutes: number;
  resubmitUncertain?: boolean;
  filesQueue?: string;
  /** Parsed --expected-seconds: a window, or null for "none"; undefined: the provider's default. */
  expectedSeconds?: GenerationEstimate | null;
}
interface InputFlags {
  truncatePrompts?: boolean;
  upscaleSmall?: boolean;
}
type RunFlags = ProviderFlags & GenerationFlags & InputFlags & { episodes?: number[]; strict?: boolean; assemble?: boolean; worker: boolean; submitRate?: number };

const program = new Command('i2v')
  .description('Durable batch image-to-video: turn a run folder of shots into videos through Wan 2.x, on Temporal.')
  .showHelpAfterError()
  // Usage errors exit 2 like other input errors (1 means "some shots failed").
  .exitOverride();

const runCmd = program
  .command('run')
  .description('Generate every shot of a run folder (resumes where it left off).')
  .argument('<runDir>', 'run folder holding 05_generated_images/ and 07_video_prompts/')
  .option('--episodes <list>', 'only these episodes, e.g. 1,2,5', parseEpisodes)
  .addOption(providerOption())
  .option('--base-url <url>', 'provider base URL (up to /api/v1)')
  .option('--strict', 'refuse to start if any input has a problem (default: skip those shots)')
  .option('--assemble', 'afterwards, join each episode into 08_generated_videos/Episode-NN.mp4')
  .option('--no-worker', 'only start the workflows; `i2v worker` processes do the work')
  .option('--max-in-flight-run <n>', 'tasks in flight at the provider for the whole run, shared among its episodes', positiveInt);
addInputOptions(addGenerationOptions(runCmd)).action(async (runDir: string, flags: RunFlags) => {
    const provider = providerFromFlags(flags);
    const settings = settingsFromFlags(flags);
    await withInterrupt(async (signal) => {
      const summary = await runCommand(runDir, {
        episodes: flags.episodes, provider, settings, signal, strict: flags.strict, truncatePrompts: flags.truncatePrompts,
        worker: flags.worker, submitsPerSecond: flags.submitRate,
      });
      const assembled = flags.assemble ? await assembleCommand(summary.plan.runDir, { episodes: flags.episodes }) : 0;
      if (summary.failed > 0) throw new ExitError(`${summary.failed} shot(s) failed; see above. Fix and re-run, or \`i2v regenerate\`.`, 1);
      if (assembled !== 0) throw new ExitError('Some episodes could not be assembled completely; see above.', assembled);
    });
  });

const validateCmd = program
  .command('validate')
  .description("Check a run folder without submitting anything: each shot's state, problems with their fixes, estimated cost and time.")
  .argument('<runDir>')
  .option('--episodes <list>', 'only these episodes, e.g. 1,2,5', parseEpisodes)
  .option('--model <name>', 'video model', DEFAULT_GENERATION.model)
  .option('--resolution <tier>', '480P, 720P or 1080P', DEFAULT_GENERATION.resolution)
  .option('--max-in-flight <n>', 'shots per episode generating at once (for the time estimate)', positiveInt, DEFAULTS.maxInFlight)
  .option('--json', 'print the report as JSON (schema in the README)');
addInputOptions(validateCmd).action(async (runDir: string, flags: Partial<GenerationFlags> & InputFlags & { episodes?: number[]; json?: boolean }) => {
    const { generation, maxInFlight } = settingsFromFlags(flags);
    const imageLimits = { ...DEFAULT_IMAGE_LIMITS, upscaleSmall: flags.upscaleSmall ?? false };
    const code = await validateCommand(runDir, { episodes: flags.episodes, generation, maxInFlight, truncatePrompts: flags.truncatePrompts ?? false, imageLimits, json: flags.json ?? false });
    if (code !== 0) throw new ExitError('The run folder has problems; see above.', code);
  });

program
  .command('status')
  .description('Show what is done, failed and in progress for a run folder.')
  .argument('<runDir>')
  .option('--json', 'print the same data as JSON, for scripts')
  .action(async (runDir: string, flags: { json?: boolean }) => {
    const temporal = await connectIfRunning();
    try {
      await statusCommand(runDir, temporal, process.stdout, { json: flags.json ?? false });
    } finally {
      await temporal?.close();
    }
  });

const regenerateCmd = program
  .command('regenerate')
  .description('Make a new take of one shot (earlier takes are kept) and wait for it.')
  .argument('<runDir>')
  .requiredOption('--episode <n>', 'episode number', positiveInt)
  .requiredOption('--shot <n>', 'shot number', positiveInt)
  .option('--prompt <text>', 'use this prompt for the new take')
  .addOption(providerOption())
  .option('--base-url <url>', 'provider base URL (up to /api/v1)');
addGenerationOptions(regenerateCmd).action(async (runDir: string, flags: ProviderFlags & GenerationFlags & { episode: number; shot: number; prompt?: string }) => {
    // Every flag is checked before anything starts.
    const provider = providerFromFlags(flags);
    const settings = settingsFromFlags(flags);
    const temporal = await connectTemporal();
    const worker = await createWorker({ connection: temporal.nativeConnection, namespace: temporal.namespace, provider });
    const workerRun = worker.run();
    try {
      await withInterrupt(async (signal) => {
        const { workflowId, episodeWorkflowId, take } = await requestRegeneration(temporal.client, runDir, { episode: flags.episode, shot: flags.shot, prompt: flags.prompt, settings, searchAttributes: temporal.searchAttributes });
        console.log(`Take ${take} of episode ${flags.episode} shot ${flags.shot} queued as ${workflowId}; waiting for it...`);
        const result = await waitForShot(temporal.client, episodeWorkflowId, workflowId, signal);
        if (result.status !== 'SUCCESS') throw new ExitError(`Take ${result.take} failed: [${result.errorCode}] ${result.errorMessage}`, 1);
        console.log(`Take ${result.take} done: ${result.videoPath}`);
      });
    } finally {
      stopWorker(worker);
      await workerRun;
      await temporal.close();
    }
  });

program
  .command('worker')
  .description('Run a worker against TEMPORAL_ADDRESS / your Temporal profile (or the local embedded server) until interrupted.')
  .addOption(providerOption())
  .option('--base-url <url>', 'provider base URL (up to /api/v1)')
  .option('--roles <list>', `kinds of work to take: ${WORKER_ROLES.join(',')}`, parseRoles, [...WORKER_ROLES])
  .addOption(filesQueueOption())
  .option('--submit-rate <n>', 'paid submissions per second across all workers', positiveNumber)
  .option('--metrics-port <port>', 'serve Prometheus metrics (Temporal\'s and i2v_*) on this port', positiveInt)
  .addOption(new Option('--log-format <format>', 'log lines as text or JSON').choices(['text', 'json']).default('text'))
  .action(async (flags: ProviderFlags & { roles: WorkerRole[]; filesQueue: string; submitRate?: number; metricsPort?: number; logFormat: 'text' | 'json' }) => {
    const provider = providerFromFlags(flags);
    ensureRuntime({ metricsPort: flags.metricsPort, logFormat: flags.logFormat });
    const temporal = await connectIfRunning();
    if (!temporal) throw new ConfigError('No Temporal server to work for.', 'Set TEMPORAL_ADDRESS (or a Temporal profile), or start the embedded one with `i2v server`.');
    const worker = await createWorker({
      connection: temporal.nativeConnection, namespace: temporal.namespace, provider, roles: flags.roles,
      queues: { ...DEFAULT_ACTIVITY_QUEUES, files: flags.filesQueue }, submitsPerSecond: flags.submitRate,
    });
    const started = { message: 'worker started', address: temporal.address, namespace: temporal.namespace, roles: flags.roles, filesQueue: flags.filesQueue, metricsPort: flags.metricsPort ?? null };
    console.log(flags.logFormat === 'json' ? JSON.stringify({ time: new Date().toISOString(), level: 'INFO', ...started }) : `Worker polling ${temporal.address} (namespace ${temporal.namespace}) for ${flags.roles.join(', ')}${flags.metricsPort ? `; metrics on :${flags.metricsPort}/metrics` : ''}; Ctrl-C to stop.`);
    await withInterrupt(async (signal) => {
      // Stop polling and let running activities finish (or be retried elsewhere); a second Ctrl-C exits at once.
      signal.addEventListener('abort', () => stopWorker(worker), { once: true });
      await worker.run();
    });
    await temporal.close();
  });

program
  .command('server')
  .description('Start the embedded Temporal dev server (state kept on disk) and its Web UI.')
  .action(async () => {
    const opts = embeddedServerOptions();
    const server = await startEmbeddedServer(opts);
    console.log(`Temporal dev server at ${server.address}${server.uiUrl ? `; Web UI at ${server.uiUrl}` : ''}; state in ${opts.stateDir}. Ctrl-C to stop.`);
    await untilInterrupted();
    await server.close();
  });

program
  .command('emulator')
  .description('Serve a local emulator of the video API (real MP4s, no cost) for dry runs.')
  .option('--port <n>', 'port on 127.0.0.1', nonNegativeInt, DEFAULTS.emulatorPort)
  .option('--pending-seconds <s>', 'time a task stays PENDING', Number, 1)
  .option('--running-seconds <s>', 'time a task stays RUNNING', Number, 4)
  .option('--ledger <file>', 'append every accepted (paid) submission to this JSONL file')
  .action(async (flags: { port: number; pendingSeconds: number; runningSeconds: number; ledger?: string }) => {
    const emulator = await startEmulator({ port: flags.port, pendingMs: flags.pendingSeconds * 1000, runningMs: flags.runningSeconds * 1000, ledgerFile: flags.ledger });
    console.log(`Emulator serving ${emulator.baseUrl} (key: ${DEFAULTS.emulatorApiKey}). Use: i2v run <dir> --provider emulator --base-url ${emulator.baseUrl}`);
    await untilInterrupted();
    await emulator.close();
  });

program
  .command('report')
  .description('Write 08_generated_videos/report.xlsx and index.html (a gallery to browse) for a run folder.')
  .argument('<runDir>')
  .action(async (runDir: string) => {
    // Loaded here: exceljs is big, and a worker (which writes reports from a child process) never needs it.
    const { reportCommand } = await import('./cli/report');
    await reportCommand(runDir);
  });

program
  .command('assemble')
  .description("Join each episode's finished shots, in shot order, into 08_generated_videos/Episode-NN.mp4.")
  .argument('<runDir>')
  .option('--episodes <list>', 'only these episodes, e.g. 1,2,5', parseEpisodes)
  .action(async (runDir: string, flags: { episodes?: number[] }) => {
    const code = await assembleCommand(runDir, { episodes: flags.episodes });
    if (code !== 0) throw new ExitError('Some episodes are incomplete or missing shots; see above.', code);
  });

program
  .command('doctor')
  .description('Check the setup (Temporal, binaries, ffmpeg, the provider key and endpoint, a run folder) and say what to fix.')
  .argument('[runDir]', "also check that this run folder's outputs can be written and its disk has room")
  .addOption(providerOption())
  .option('--base-url <url>', 'provider base URL (up to /api/v1)')
  .action(async (runDir: string | undefined, flags: ProviderFlags) => {
    const code = await doctorCommand({ provider: parseProviderKind(flags.provider), baseUrl: flags.baseUrl, runDir });
    if (code !== 0) throw new ExitError('Fix the lines marked ✗ above, then run `i2v doctor` again.', code);
  });

program
  .command('demo')
  .description('Run the bundled example (2 episodes × 3 shots) end to end against the emulator.')
  .option('--run-dir <dir>', 'run folder to use', path.join(PROJECT_ROOT, 'examples', 'demo-run'))
  .action(async (flags: { runDir: string }) => {
    const emulator = await startEmulator({ pendingMs: 1000, runningMs: 3000 });
    const temporal = await connectTemporal();
    try {
      const provider = providerConfig('emulator', { baseUrl: emulator.baseUrl });
      await withInterrupt(async (signal) => {
        const summary = await runCommand(flags.runDir, { provider, settings: settingsFromFlags({}), temporal, signal, refreshMs: 1000 });
        const paid = emulator.ledger().submissions.length;
        const allDone = paid === 0 && summary.failed === 0;
        console.log(`\nEmulator: ${paid} paid submission(s) in this demo run${allDone ? ' (everything was already done)' : ''}.`);
        console.log(`Videos: ${path.join(summary.plan.runDir, '08_generated_videos')}`);
        console.log(`Task record: ${path.join(summary.plan.runDir, '08_generated_videos', 'tasks.json')}`);
        console.log(temporal.startedServer
          ? `Web UI: run \`npx i2v server\` and open ${temporal.uiUrl ?? 'http://localhost:8233'} to browse this run's workflows (state is kept on disk).`
          : `Web UI: ${temporal.uiUrl ?? '(see your Temporal server)'}`);
        if (summary.failed > 0) throw new ExitError(`${summary.failed} demo shot(s) failed.`, 1);
      });
    } finally {
      await temporal.close();
      await emulator.close();
    }
  });

/** How inputs are checked, shared by `run` and `validate`. */
function addInputOptions(cmd: Command): Command {
  return cmd
    .option('--truncate-prompts', 'cut prompts longer than the model reads (800 characters for wan2.2) instead of skipping the shot')
    .option('--upscale-small', 'enlarge images under 360 px on a side instead of skipping the shot');
}

/** Generation settings shared by every command that starts shots. */
function addGenerationOptions(cmd: Command): Command {
  return cmd
    .option('--max-in-flight <n>', 'shots per episode generating at once', positiveInt, DEFAULTS.maxInFlight)
    .option('--model <name>', 'video model', DEFAULT_GENERATION.model)
    .option('--resolution <tier>', '480P, 720P or 1080P', DEFAULT_GENERATION.resolution)
    .option('--no-prompt-extend', 'send prompt_extend=false (no LLM prompt rewriting)')
    .option('--deadline-minutes <n>', 'stop waiting for a task this long after submitting it', positiveInt, DEFAULTS.deadlineSeconds / 60)
    .option('--resubmit-uncertain', 'when a submission\'s outcome is unknown (timeout, reset), submit again: may pay twice (default: stop, SUBMIT_UNCERTAIN)')
    .addOption(filesQueueOption())
    .option('--submit-rate <n>', 'paid submissions per second across all workers', positiveNumber)
    .option(
      '--expected-seconds <range>',
      `generation time to expect until an episode has learned its own, as earliest-latest seconds, or "none" (default: ${expectedRangeText(DEFAULTS.expectedGeneration)} for 302 and dashscope, none for the emulator)`,
      parseExpectedSeconds,
    );
}

function expectedRangeText(e: GenerationEstimate): string {
  return `${e.earliestSeconds}-${e.latestSeconds}`;
}

/** "90-300" (seconds) or "none". */
function parseExpectedSeconds(value: string): GenerationEstimate | null {
  if (value.trim().toLowerCase() === 'none') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*$/.exec(value);
  const [earliest, latest] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
  if (!(earliest >= 0 && latest > earliest)) throw new InvalidArgumentError('expected earliest-latest seconds, e.g. 90-300, or "none"');
  return { earliestSeconds: earliest, typicalSeconds: (earliest + latest) / 2, latestSeconds: latest };
}

/** File work (downloads, tasks.json, reports) must run where the run folder is: a shared folder, or a host's own queue. */
function filesQueueOption(): Option {
  return new Option('--files-queue <name>', 'task queue for file work; give each host its own when the run folder is not shared').default(DEFAULT_ACTIVITY_QUEUES.files);
}

function providerOption(): Option {
  return new Option('--provider <name>', 'video API: 302.ai proxy, DashScope direct, or the local emulator').choices(['302', 'dashscope', 'emulator']).default('302');
}

function providerFromFlags(flags: ProviderFlags): ProviderConfig {
  return providerConfig(parseProviderKind(flags.provider), { baseUrl: flags.baseUrl });
}

function settingsFromFlags(flags: Partial<GenerationFlags & ProviderFlags> & InputFlags): RunSettings {
  const resolution = flags.resolution ?? DEFAULT_GENERATION.resolution;
  if (!['480P', '720P', '1080P'].includes(resolution)) throw new ConfigError(`Unknown resolution "${resolution}".`, 'Use 480P, 720P or 1080P.');
  const generation: GenerationParams = {
    model: flags.model ?? DEFAULT_GENERATION.model,
    resolution: resolution as Resolution,
    promptExtend: flags.promptExtend ?? DEFAULT_GENERATION.promptExtend,
  };
  return {
    generation,
    deadlineSeconds: (flags.deadlineMinutes ?? DEFAULTS.deadlineSeconds / 60) * 60,
    poll: DEFAULT_POLL_SCHEDULE,
    ...expectedGeneration(flags),
    maxInFlight: flags.maxInFlight ?? DEFAULTS.maxInFlight,
    upscaleSmall: flags.upscaleSmall ?? false,
    uncertainSubmit: flags.resubmitUncertain ? 'resubmit' : 'fail',
    queues: { ...DEFAULT_ACTIVITY_QUEUES, files: flags.filesQueue ?? DEFAULT_ACTIVITY_QUEUES.files },
    maxInFlightPerRun: flags.maxInFlightRun,
  };
}

/** The expected generation time: as given, else the real service's for a real provider (the emulator is far quicker). */
function expectedGeneration(flags: Partial<GenerationFlags & ProviderFlags>): Pick<RunSettings, 'expectedGeneration'> {
  if (flags.expectedSeconds === null) return {};
  if (flags.expectedSeconds) return { expectedGeneration: flags.expectedSeconds };
  return flags.provider === 'emulator' ? {} : { expectedGeneration: { ...DEFAULTS.expectedGeneration } };
}

/** The configured server (its errors are reported), else the embedded one if it is running; never starts one. */
async function connectIfRunning(): Promise<TemporalHandle | undefined> {
  if (configuredConnection()) return connectTemporal();
  const opts = embeddedServerOptions();
  try {
    return await connectTemporal({ ...process.env, TEMPORAL_ADDRESS: `${opts.ip}:${opts.port}` });
  } catch {
    return undefined;
  }
}

/** First Ctrl-C (or SIGTERM) stops cleanly; a second one exits at once. Work in Temporal resumes on the next run. */
async function withInterrupt(fn: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) {
      console.error('\nForced exit. Nothing is lost: finished files are complete, and the next run resumes.');
      process.exit(130);
    }
    console.error('\nStopping... (Ctrl-C again to force). Run the same command again to resume.');
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await fn(controller.signal);
  } catch (err) {
    if (err instanceof RunInterrupted) throw new ExitError('Interrupted.', 130);
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function untilInterrupted(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

function parseEpisodes(value: string): number[] {
  const list = value.split(',').map((v) => Number(v.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 1)) throw new InvalidArgumentError('expected episode numbers like 1,2,5');
  return list;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number above 0');
  return n;
}

function parseRoles(value: string): WorkerRole[] {
  const roles = value.split(',').map((r) => r.trim());
  const unknown = roles.filter((r) => !(WORKER_ROLES as readonly string[]).includes(r));
  if (unknown.length) throw new InvalidArgumentError(`unknown role(s) ${unknown.join(', ')}; use ${WORKER_ROLES.join(',')}`);
  return roles as WorkerRole[];
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive whole number');
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number ≥ 0');
  return n;
}

/** Maps error kinds to messages and exit codes. */
export async function main(argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed the message (and help); `--help` and `--version` are not errors.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof ExitError) {
      console.error(err.message);
      return err.exitCode;
    }
    if (err instanceof InputError || err instanceof ConfigError) {
      console.error(`Error: ${err.message}${err.fix ? `\n  ${err.fix}` : ''}`);
      return 2;
    }
    if (err instanceof ProviderError) {
      console.error(`Provider error [${err.code}]: ${err.message}`);
      return 3;
    }
    console.error('Unexpected error (please report it):', err);
    return 70;
  }
}

if (require.main === module) {
  void main(process.argv).then((code) => process.exit(code));
}
