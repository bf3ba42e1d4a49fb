/**
 * The first-frame image-to-video models the emulator accepts, with their allowed parameters
 * (reference §2.1). Later models (wan2.7+) use a different request schema and are not emulated.
 */
import type { Resolution } from '../provider/types';

export interface ModelSpec {
  resolutions: readonly Resolution[];
  defaultResolution: Resolution;
  durations: readonly number[];
  defaultDuration: number;
  /** Longer prompts are silently truncated to this many characters (reference §2). */
  promptMaxChars: number;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

export const MODELS: ReadonlyMap<string, ModelSpec> = new Map<string, ModelSpec>([
  ['wan2.2-i2v-flash', { resolutions: ['480P', '720P', '1080P'], defaultResolution: '720P', durations: [5], defaultDuration: 5, promptMaxChars: 800 }],
  ['wan2.2-i2v-plus', { resolutions: ['480P', '1080P'], defaultResolution: '1080P', durations: [5], defaultDuration: 5, promptMaxChars: 800 }],
  ['wanx2.1-i2v-plus', { resolutions: ['720P'], defaultResolution: '720P', durations: [5], defaultDuration: 5, promptMaxChars: 800 }],
  ['wanx2.1-i2v-turbo', { resolutions: ['480P', '720P'], defaultResolution: '720P', durations: [3, 4, 5], defaultDuration: 5, promptMaxChars: 800 }],
  // wan2.5/2.6 prompt limits: sources say 1500 or 2000; the lower one is the safe emulation.
  ['wan2.5-i2v-preview', { resolutions: ['480P', '720P', '1080P'], defaultResolution: '1080P', durations: [5, 10], defaultDuration: 5, promptMaxChars: 1500 }],
  ['wan2.6-i2v', { resolutions: ['720P', '1080P'], defaultResolution: '1080P', durations: [5, 10, 15], defaultDuration: 5, promptMaxChars: 1500 }],
  ['wan2.6-i2v-flash', { resolutions: ['720P', '1080P'], defaultResolution: '1080P', durations: range(2, 15), defaultDuration: 5, promptMaxChars: 1500 }],
]);

/** `usage.SR` reported for each tier. */
export const TIER_SR: Readonly<Record<Resolution, number>> = { '480P': 480, '720P': 720, '1080P': 1080 };

/** Output pixel count of each tier; the frame keeps the input's aspect ratio at about this many pixels. */
export const TIER_PIXELS: Readonly<Record<Resolution, number>> = {
  '480P': 832 * 480,
  '720P': 1280 * 720,
  '1080P': 1920 * 1080,
};
