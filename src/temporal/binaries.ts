/**
 * Where the Temporal CLI (dev server + Web UI) and the time-skipping test server come from, in order:
 * the env override, the project's pinned copy in `.tools/` (installed by `npm ci`), PATH, and finally the
 * SDK's own download (which needs internet).
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';
import type { EphemeralServerExecutable } from '@temporalio/testing/lib/ephemeral-server';

export type TemporalTool = 'temporal' | 'temporal-test-server';

const ENV_OVERRIDE: Record<TemporalTool, string> = {
  temporal: 'TEMPORAL_CLI_PATH',
  'temporal-test-server': 'TEMPORAL_TEST_SERVER_PATH',
};

export const PROJECT_ROOT = findProjectRoot(__dirname);

export interface ResolvedTool {
  executable: EphemeralServerExecutable;
  /** Human-readable origin, for `doctor`-style messages. */
  source: 'env' | 'project' | 'path' | 'sdk-download';
}

export function resolveTemporalTool(tool: TemporalTool, env: NodeJS.ProcessEnv = process.env): ResolvedTool {
  const fromEnv = env[ENV_OVERRIDE[tool]];
  if (fromEnv) return { executable: { type: 'existing-path', path: fromEnv }, source: 'env' };
  const pinned = pinnedToolPath(tool);
  if (pinned && isExecutable(pinned)) return { executable: { type: 'existing-path', path: pinned }, source: 'project' };
  const onPath = findOnPath(tool, env.PATH ?? '');
  if (onPath) return { executable: { type: 'existing-path', path: onPath }, source: 'path' };
  return { executable: { type: 'cached-download' }, source: 'sdk-download' };
}

function pinnedToolPath(tool: TemporalTool): string | undefined {
  const manifest = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'scripts', 'temporal-tools.json'), 'utf8')) as {
    tools: Array<{ name: string; version: string }>;
  };
  const entry = manifest.tools.find((t) => t.name === tool);
  return entry && path.join(PROJECT_ROOT, '.tools', tool, entry.version, tool);
}

function findOnPath(name: string, pathVar: string): string | undefined {
  for (const dir of pathVar.split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findProjectRoot(start: string): string {
  let dir = start;
  for (;;) {
    try {
      accessSync(path.join(dir, 'scripts', 'temporal-tools.json'));
      return dir;
    } catch {
      const parent = path.dirname(dir);
      if (parent === dir) throw new Error(`i2v: cannot find the project root above ${start}`);
      dir = parent;
    }
  }
}
