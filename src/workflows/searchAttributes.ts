/**
 * Custom search attributes, so the Web UI (and `temporal workflow list --query`) can filter one run's
 * episodes and shots: e.g. `I2vRun = "demo-run-7cd459a7" AND I2vState = "failed"`. Registered on the
 * embedded server automatically; on other clusters `i2v run` registers them or says how.
 */
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';

export const I2V_RUN = defineSearchAttributeKey('I2vRun', SearchAttributeType.KEYWORD);
export const I2V_EPISODE = defineSearchAttributeKey('I2vEpisode', SearchAttributeType.INT);
export const I2V_SHOT = defineSearchAttributeKey('I2vShot', SearchAttributeType.INT);
export const I2V_STATE = defineSearchAttributeKey('I2vState', SearchAttributeType.KEYWORD);

export const SEARCH_ATTRIBUTES = [I2V_RUN, I2V_EPISODE, I2V_SHOT, I2V_STATE];

export function episodeSearchAttributes(runId: string, episode: number): SearchAttributePair[] {
  return [
    { key: I2V_RUN, value: runId },
    { key: I2V_EPISODE, value: episode },
    { key: I2V_STATE, value: 'running' },
  ];
}

export function shotSearchAttributes(runId: string, episode: number, shot: number): SearchAttributePair[] {
  return [
    { key: I2V_RUN, value: runId },
    { key: I2V_EPISODE, value: episode },
    { key: I2V_SHOT, value: shot },
    // A shot workflow starts by preparing its image (and then submits it); it says when it is generating.
    { key: I2V_STATE, value: 'preparing' },
  ];
}
