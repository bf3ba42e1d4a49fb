/**
 * `npm run bench`: the pipeline against a naive baseline and at scale, on the emulator, with a realistic
 * generation-latency distribution shrunk by one time factor. Prints one table and writes
 * bench/results/<timestamp>-<scenario>.json. See bench/README.md for what each figure means.
 */
import os from 'node:os';
import path from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_POLL_SCHEDULE } from '../src/workflows/polling';
import { NAIVE_POLL_SECONDS, scalePollSchedule, type LatencyModel } from './latency';
import { round } from './measure';
import { pickMemorySettings } from './ours';
import { measureNaive, measureOurs, type MeasureOptions, type PipelineConfig, type RunMetrics, type ScenarioName } from './pipelines';
import { modelPollSchedules } from './pollModel';
import { checkTargets, formatActivities, formatModel, formatRepetitions, formatTable, type DefaultPair } from './report';

const SCENARIOS: readonly ScenarioName[] = ['default', 'scale', 'payload'];

interface BenchOptions extends MeasureOptions {
  scenarios: ScenarioName[];
  scenarioLabel: string;
  shots: number;
  latency: LatencyModel;
  maxInFlight?: number;
  scaleShots: number;
  scaleMaxInFlight: number;
  payloadShots: number;
  repeat: number;
}

/**
 * The memory settings the worker will run with: what this process's environment has of them, and otherwise
 * bin/i2v.js's own MALLOC_ARENA_MAX (the Docker image sets the same). Each run records what the worker really had.
 */
function expectedMemorySettings(): string {
  const inherited = Object.entries(pickMemorySettings(process.env)).map(([k, v]) => `${k}=${v}`);
  return process.env.MALLOC_ARENA_MAX ? inherited.join(' ') : ['MALLOC_ARENA_MAX=2 (bin/i2v.js sets it)', ...inherited].join(' ');
}

async function main(argv: string[]): Promise<number> {
  const opts = parseOptions(argv);
  const ratio = opts.timeFactor;
  const header = [
    `i2v bench: scenario ${opts.scenarioLabel}, seed ${opts.seed}, time factor ${ratio} (1 real second = ${round(ratio * 1000, 1)} ms here)`,
    `  latency "real": PENDING ${round(3 * ratio, 3)} s, RUNNING 90 % U(90,180) s + 10 % U(180,300) s, scaled to ${round(90 * ratio, 2)}–${round(300 * ratio, 2)} s`,
    `  our poll schedule ${JSON.stringify(scalePollSchedule(DEFAULT_POLL_SCHEDULE, ratio))}, naive every ${round(NAIVE_POLL_SECONDS * ratio, 3)} s; submit rate ${opts.submitRate}/s`,
    `  memory settings of the worker: ${expectedMemorySettings()}`,
  ];
  for (const line of header) console.log(line);

  const runs: RunMetrics[] = [];
  const pairs: DefaultPair[] = [];
  const started = Date.now();
  const loadAtStart = os.loadavg();
  for (const scenario of opts.scenarios) {
    if (scenario === 'default') {
      const cfg: PipelineConfig = { scenario, shots: opts.shots, image: 'scene', latency: opts.latency, maxInFlight: opts.maxInFlight ?? opts.shots };
      for (let i = 1; i <= opts.repeat; i++) {
        const suffix = opts.repeat > 1 ? ` #${i}` : '';
        pairs.push({ ours: await measureOurs(`ours ${opts.shots}${suffix}`, cfg, opts), naive: await measureNaive(`naive ${opts.shots}${suffix}`, cfg, opts) });
      }
      // The table shows the first repetition; the others are summarised below it.
      runs.push(pairs[0]!.ours, pairs[0]!.naive);
    } else if (scenario === 'scale') {
      const cfg: PipelineConfig = { scenario, shots: opts.scaleShots, image: 'scene', latency: 'near-zero', maxInFlight: opts.scaleMaxInFlight };
      runs.push(await measureOurs(`scale ${opts.scaleShots}`, cfg, opts));
    } else {
      for (const [label, image] of [['100 KB', { bytes: 100_000 }], ['9 MB', { bytes: 9_000_000 }]] as const) {
        // The same latency for every task, so both sizes poll alike and any difference is in the payloads.
        const cfg: PipelineConfig = { scenario, shots: opts.payloadShots, image, latency: 'fixed', maxInFlight: opts.payloadShots };
        runs.push(await measureOurs(`payload ${label}`, cfg, opts));
      }
    }
  }
  const targets = checkTargets(runs, pairs);
  const model = opts.scenarios.includes('default') ? modelPollSchedules(opts.seed) : undefined;
  console.log('');
  console.log(formatTable(runs));
  console.log('');
  console.log(formatActivities(runs));
  console.log('');
  if (pairs.length > 1) {
    console.log(formatRepetitions(pairs));
    console.log('');
  }
  if (model) {
    console.log(formatModel(model.outcomes, opts.timeFactor));
    console.log('');
  }
  for (const t of targets) console.log(`${t.met ? 'MET   ' : 'MISSED'} ${t.target}: ${t.evidence}`);
  console.log(`\n(${round((Date.now() - started) / 60_000, 1)} min)`);

  const resultsDir = path.join(__dirname, '..', '..', 'results');
  await mkdir(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${opts.scenarioLabel}.json`);
  const machine = {
    cpus: os.availableParallelism(), memoryGb: round(os.totalmem() / 2 ** 30, 1), node: process.version, platform: `${os.platform()} ${os.release()}`,
    // Other work on the machine slows both pipelines; the 1-, 5- and 15-minute load averages say how busy it was.
    loadAverage: { start: loadAtStart.map((l) => round(l, 2)), end: os.loadavg().map((l) => round(l, 2)) },
    memoryEnv: pickMemorySettings(process.env),
  };
  await writeFile(file, `${JSON.stringify({ scenario: opts.scenarioLabel, seed: opts.seed, timeFactor: opts.timeFactor, options: opts, machine, runs, repetitions: pairs.length > 1 ? pairs : undefined, targets, pollModel: model?.outcomes }, null, 2)}\n`);
  console.log(`Results: ${path.relative(process.cwd(), file)}`);
  return 0;
}


function parseOptions(argv: string[]): BenchOptions {
  const positive = (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
    return n;
  };
  const fraction = (value: string) => {
    const n = Number(value);
    if (!(n > 0 && n <= 1)) throw new InvalidArgumentError('expected a number in (0, 1], e.g. 0.1 or 1/60');
    return n;
  };
  const program = new Command('bench')
    .description('Benchmark the pipeline against a naive baseline on the emulator (see bench/README.md).')
    .addOption(new Option('--scenario <name>', 'default (pipeline vs naive), scale, payload, or all').choices(['default', 'scale', 'payload', 'all']))
    .option('--shots <n>', 'shots in the default scenario (up to 1000)', positive, 200)
    .addOption(new Option('--latency <model>', 'generation latency of the default scenario').choices(['real', 'near-zero', 'fixed']).default('real'))
    .option('--time-factor <f>', 'multiplies every real-service interval (a fraction like 1/60 is accepted)', (v) => fraction(String(evalFraction(v))), 0.5)
    .option('--seed <n>', 'seed of the latency draws', positive, 20_240_601)
    .option('--max-in-flight <n>', 'our maxInFlight in the default scenario (default: all shots)', positive)
    .option('--scale-shots <n>', 'shots in the scale scenario', positive, 1000)
    .option('--scale-max-in-flight <n>', 'our maxInFlight in the scale scenario', positive, 100)
    .option('--payload-shots <n>', 'shots per image size in the payload scenario', positive, 20)
    .option('--submit-rate <n>', 'our submissions per second (the baseline submits all at once)', positive, 1000)
    .option('--repeat <n>', 'runs of the default scenario (both pipelines each time); its targets are judged on the medians', positive, 1)
    .option('--keep', 'keep the temporary run folders and servers\' state')
    .parse(argv);
  const flags = program.opts<{
    scenario?: 'default' | 'scale' | 'payload' | 'all'; shots: number; latency: LatencyModel; timeFactor: number; seed: number; maxInFlight?: number;
    scaleShots: number; scaleMaxInFlight: number; payloadShots: number; submitRate: number; repeat: number; keep?: boolean;
  }>();
  if (flags.shots > 1000) throw new InvalidArgumentError('--shots is at most 1000');
  // Naming the default scenario's shots or latency without a scenario runs just that comparison.
  const explicit = program.getOptionValueSource('shots') === 'cli' || program.getOptionValueSource('latency') === 'cli';
  const scenario = flags.scenario ?? (explicit ? 'default' : 'all');
  if (flags.repeat > 1 && scenario !== 'default' && scenario !== 'all') throw new InvalidArgumentError('--repeat repeats the default scenario; add --scenario default or all');
  return {
    scenarios: scenario === 'all' ? [...SCENARIOS] : [scenario],
    scenarioLabel: scenario,
    shots: flags.shots,
    latency: flags.latency,
    timeFactor: flags.timeFactor,
    seed: flags.seed,
    maxInFlight: flags.maxInFlight,
    scaleShots: flags.scaleShots,
    scaleMaxInFlight: flags.scaleMaxInFlight,
    payloadShots: flags.payloadShots,
    submitRate: flags.submitRate,
    repeat: flags.repeat,
    keep: flags.keep ?? false,
  };
}

/** "0.1" or "1/60". */
function evalFraction(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(\d+(?:\.\d+)?)\s*$/.exec(text);
  return m ? Number(m[1]) / Number(m[2]) : Number(text);
}

main(process.argv).then(
  (code) => process.exit(code),
  (err: unknown) => {
    // A bad option is the user's to fix, not a bug: its message is enough.
    if (err instanceof InvalidArgumentError) console.error(`bench: ${err.message}`);
    else console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(2);
  },
);
