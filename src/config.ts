/**
 * Defaults and environment, read in one place. Everything else receives plain config objects.
 */
import { ConfigError } from './errors';
import type { Resolution } from './provider/types';

export type ProviderKind = '302' | 'dashscope' | 'emulator';

export interface ProviderConfig {
  kind: ProviderKind;
  /** Base URL up to and including `/api/v1`, without a trailing slash. */
  baseUrl: string;
  /** Secret. Lives only in worker memory: never in workflow/activity arguments, history or logs. */
  apiKey: string;
  /** Send `X-DashScope-Async: enable` (required by DashScope direct). */
  asyncHeader: boolean;
  /** Per-request timeout for API calls. */
  requestTimeoutMs: number;
}

/** What is generated, per shot. Part of workflow input (it decides cost), so never secret. */
export interface GenerationParams {
  model: string;
  resolution: Resolution;
  promptExtend: boolean;
  /** Seconds of video; omitted means the model's default (wan2.2 is fixed at 5 s). */
  duration?: number;
}

export const DEFAULTS = {
  baseUrl302: 'https://api.302.ai/aliyun/api/v1',
  baseUrlDashscope: 'https://dashscope.aliyuncs.com/api/v1',
  emulatorPort: 8787,
  emulatorApiKey: 'emulator-key',
  model: 'wan2.2-i2v-flash',
  resolution: '720P' as Resolution,
  promptExtend: true,
  requestTimeoutMs: 60_000,
  /** A shot stops polling this long after its submission. */
  deadlineSeconds: 2 * 60 * 60,
  /** Shots of one episode generating at once (the provider's concurrency limit is small). */
  maxInFlight: 3,
  /** Largest data URL (the whole `data:...;base64,...` string) sent to the provider. */
  maxDataUrlBytes: 10 * 1024 * 1024,
  /** Largest video we are willing to download. */
  maxVideoBytes: 512 * 1024 * 1024,
  thumbnailSmallWidth: 150,
  /** Paid submissions per second across all workers (published limits are 2–5 RPS per account). */
  submitsPerSecond: 2,
  /**
   * How long the real service takes from submission to a finished video, until an episode has learned its own
   * figures from finished shots: most tasks 1.5–3 min, a tail to 5 min (reference §6: "typically 1–5 min";
   * flash at 720P is at the quick end). Shots check first just after `earliestSeconds`, then densely up to
   * `latestSeconds`. Not used with the emulator, which is much quicker.
   */
  expectedGeneration: { earliestSeconds: 90, typicalSeconds: 135, latestSeconds: 300 },
} as const;

export const DEFAULT_GENERATION: GenerationParams = {
  model: DEFAULTS.model,
  resolution: DEFAULTS.resolution,
  promptExtend: DEFAULTS.promptExtend,
};

type Env = Record<string, string | undefined>;

/** Provider settings from flags (when given) over the environment over defaults. */
export function providerConfig(
  kind: ProviderKind,
  overrides: { baseUrl?: string; asyncHeader?: boolean } = {},
  env: Env = process.env,
): ProviderConfig {
  const requestTimeoutMs = DEFAULTS.requestTimeoutMs;
  switch (kind) {
    case '302': {
      const apiKey = env.VIDEO_302AI_API_KEY;
      if (!apiKey) throw new ConfigError('VIDEO_302AI_API_KEY is not set.', 'Export your 302.ai key as VIDEO_302AI_API_KEY, or use --provider emulator for a free dry run.');
      return { kind, baseUrl: trimSlash(overrides.baseUrl ?? env.I2V_BASE_URL ?? DEFAULTS.baseUrl302), apiKey, asyncHeader: overrides.asyncHeader ?? false, requestTimeoutMs };
    }
    case 'dashscope': {
      const apiKey = env.DASHSCOPE_API_KEY;
      if (!apiKey) throw new ConfigError('DASHSCOPE_API_KEY is not set.', 'Export your DashScope key as DASHSCOPE_API_KEY (same region as --base-url).');
      return { kind, baseUrl: trimSlash(overrides.baseUrl ?? env.I2V_BASE_URL ?? DEFAULTS.baseUrlDashscope), apiKey, asyncHeader: overrides.asyncHeader ?? true, requestTimeoutMs };
    }
    case 'emulator': {
      const baseUrl = overrides.baseUrl ?? env.I2V_BASE_URL ?? `http://127.0.0.1:${DEFAULTS.emulatorPort}/api/v1`;
      return { kind, baseUrl: trimSlash(baseUrl), apiKey: env.I2V_EMULATOR_API_KEY ?? DEFAULTS.emulatorApiKey, asyncHeader: overrides.asyncHeader ?? false, requestTimeoutMs };
    }
  }
}

export function parseProviderKind(value: string): ProviderKind {
  if (value === '302' || value === 'dashscope' || value === 'emulator') return value;
  throw new ConfigError(`Unknown provider "${value}".`, 'Use --provider 302, dashscope or emulator.');
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}
