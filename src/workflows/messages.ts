/** Queries, signals and updates, declared once and imported by workflows and the CLI alike. */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { EpisodeProgress, PollHint, RegenerateAccepted, RegenerateRequest, ShotPhaseUpdate, ShotProgress } from './types';

export const episodeProgressQuery = defineQuery<EpisodeProgress>('progress');
export const shotProgressQuery = defineQuery<ShotProgress>('shotProgress');
export const regenerateUpdate = defineUpdate<RegenerateAccepted, [RegenerateRequest]>('regenerate');
export const shotPhaseSignal = defineSignal<[ShotPhaseUpdate]>('shotPhase');
export const pollHintSignal = defineSignal<[PollHint]>('pollHint');
