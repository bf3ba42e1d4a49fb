/**
 * What a shot costs and what each model accepts. Prices live in one file, `config/prices.json` (per second of
 * output video, by model and resolution tier, in one currency), so they can be updated without a release; the
 * model limits below come from the API reference (§2, §2.1). The emulator keeps its own table on purpose
 * (src/emulator/models.ts): it is an independent fake, so a mistake here is caught there.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { GenerationParams } from './config';
import { ConfigError } from './errors';
import type { Resolution } from './provider/types';
import { PROJECT_ROOT } from './temporal/binaries';

export const PRICES_FILE = path.join(PROJECT_ROOT, 'config', 'prices.json');

export interface ModelLimits {
  /** Longer prompts are silently truncated by the API (reference §2). */
  promptMaxChars: number;
  /** Seconds of video when `duration` is not sent. */
  defaultDuration: number;
  resolutions: readonly Resolution[];
}

const ALL_TIERS: readonly Resolution[] = ['480P', '720P', '1080P'];

const MODEL_LIMITS: ReadonlyMap<string, ModelLimits> = new Map<string, ModelLimits>([
  ['wan2.2-i2v-flash', { promptMaxChars: 800, defaultDuration: 5, resolutions: ALL_TIERS }],
  ['wan2.2-i2v-plus', { promptMaxChars: 800, defaultDuration: 5, resolutions: ['480P', '1080P'] }],
  ['wanx2.1-i2v-plus', { promptMaxChars: 800, defaultDuration: 5, resolutions: ['720P'] }],
  ['wanx2.1-i2v-turbo', { promptMaxChars: 800, defaultDuration: 5, resolutions: ['480P', '720P'] }],
  // Sources give 1500 or 2000 characters for wan2.5/2.6; the lower one never loses text.
  ['wan2.5-i2v-preview', { promptMaxChars: 1500, defaultDuration: 5, resolutions: ALL_TIERS }],
  ['wan2.6-i2v', { promptMaxChars: 1500, defaultDuration: 5, resolutions: ['720P', '1080P'] }],
  ['wan2.6-i2v-flash', { promptMaxChars: 1500, defaultDuration: 5, resolutions: ['720P', '1080P'] }],
]);

/** For a model not in the table: the strictest known prompt limit, and no opinion on resolutions. */
const UNKNOWN_MODEL: ModelLimits = { promptMaxChars: 800, defaultDuration: 5, resolutions: ALL_TIERS };

export function modelLimits(model: string): ModelLimits {
  return MODEL_LIMITS.get(model) ?? UNKNOWN_MODEL;
}

export function isKnownModel(model: string): boolean {
  return MODEL_LIMITS.has(model);
}

export interface Price {
  perSecond: number;
  /** ISO 4217 code, e.g. `CNY`. */
  currency: string;
}

/** The list price per second of output, or undefined when the price table has none. */
export function priceOf(model: string, resolution: string): Price | undefined {
  const table = priceTable();
  const perSecond = table.perSecond[model]?.[resolution];
  return perSecond === undefined ? undefined : { perSecond, currency: table.currency };
}

/** One take of one shot; undefined when the price is unknown. */
export function estimateShotCost(params: GenerationParams): { amount: number; currency: string; seconds: number } | undefined {
  const price = priceOf(params.model, params.resolution);
  if (!price) return undefined;
  const seconds = params.duration ?? modelLimits(params.model).defaultDuration;
  return { amount: roundMoney(price.perSecond * seconds), currency: price.currency, seconds };
}

/** Removes binary floating-point noise (0.2 × 5 × 6 = 6.000000000000001) without rounding real fractions. */
export function roundMoney(amount: number): number {
  return Math.round(amount * 1e6) / 1e6;
}

const SYMBOLS: Readonly<Record<string, string>> = { CNY: '¥', USD: '$', EUR: '€' };

/** `¥6.00`, `$0.18`, or `6.00 GBP` for a currency without a symbol here. */
export function formatMoney(amount: number, currency: string): string {
  const symbol = SYMBOLS[currency];
  return symbol ? `${symbol}${amount.toFixed(2)}` : `${amount.toFixed(2)} ${currency}`;
}

interface PriceTable {
  currency: string;
  perSecond: Record<string, Record<string, number>>;
}

let loaded: PriceTable | undefined;

function priceTable(): PriceTable {
  loaded ??= readPriceTable(PRICES_FILE);
  return loaded;
}

/** Reads and checks a price file; exported for tests. */
export function readPriceTable(file: string): PriceTable {
  const fix = `Repair ${file}: {"currency": "CNY", "perSecond": {"<model>": {"720P": 0.2}}}.`;
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`Cannot read the price table ${file}: ${(err as Error).message}`, fix);
  }
  const table = data as Partial<PriceTable> | null;
  const valid =
    typeof table === 'object' && table !== null &&
    typeof table.currency === 'string' && /^[A-Z]{3}$/.test(table.currency) &&
    typeof table.perSecond === 'object' && table.perSecond !== null &&
    Object.values(table.perSecond).every(
      (tiers) => typeof tiers === 'object' && tiers !== null && Object.values(tiers).every((p) => typeof p === 'number' && p >= 0 && Number.isFinite(p)),
    );
  if (!valid) throw new ConfigError(`The price table ${file} is malformed.`, fix);
  return { currency: table.currency!, perSecond: table.perSecond! };
}
