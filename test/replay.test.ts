/**
 * Replays recorded histories against the current workflow code: a change that would break workflows already
 * running (non-determinism) fails here. Re-record with `npm run record-histories` only for a deliberate,
 * versioned (patched) change, and keep the previous recordings beside them as `<name>.v<N>.binpb`.
 */
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from '../src/worker';
import { HISTORY_FIXTURES, loadHistory } from './helpers/histories';

const fixtures = readdirSync(HISTORY_FIXTURES).filter((f) => f.endsWith('.binpb'));

describe('replay of recorded histories', () => {
  it('has recorded histories of every workflow to replay', () => {
    expect(fixtures).toEqual(expect.arrayContaining([
      'episode-success.binpb', 'episode-transient-retry.binpb', 'episode-moderation.binpb', 'episode-regenerate.binpb', 'episode-continue-as-new.binpb',
      'shot-deadline.binpb', 'shot-failed.binpb', 'shot-success.binpb',
      // With poll hints from the episode to its last shots (patch 'endgame-poll-hints').
      'episode-poll-hints.binpb', 'shot-poll-hint.binpb',
      // A shot keeping I2vState up to date: with stateUpdates 'settled' (the episode asks for it), and before (every phase).
      'shot-search-attributes.binpb', 'shot-search-attributes.v1.binpb',
      // A shot whose image the pre-flight found acceptable as it is: submitted without a prepareImage step.
      'shot-image-as-is.binpb',
      // Recorded before the patches 'phase-signal-alongside', 'record-in-submit' and 'endgame-poll-hints': workflows started then still replay.
      'episode-success.v1.binpb', 'episode-continue-as-new.v1.binpb', 'shot-deadline.v1.binpb', 'shot-success.v1.binpb',
      // Shots recorded with a marker per patch, before 'shot-patches-1' stood for all of them.
      'shot-success.v2.binpb', 'shot-deadline.v2.binpb', 'shot-failed.v2.binpb', 'shot-poll-hint.v2.binpb', 'shot-search-attributes.v2.binpb',
      'shot-image-as-is.v2.binpb',
      // Poll hints to as many running takes as the episode's size calls for (patch 'endgame-shots-by-size'), and before it (three).
      'episode-endgame-by-size.binpb', 'episode-endgame-by-size.v1.binpb',
      // A hint that came just before the expected window closed: held on past it (patch 'hint-past-window'), and before it (lapsed with the window).
      'shot-poll-hint-window.binpb', 'shot-poll-hint-window.v1.binpb',
    ]));
  });

  it.each(fixtures)('%s replays deterministically with the current workflow code', async (file) => {
    const history = await loadHistory(file);
    await expect(Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, file)).resolves.toBeUndefined();
  });

  it('replays a shot that asked for its image to be sent as it is, but ran on a worker that prepared it first', async () => {
    // A worker older than `imageAsIs` ignores it: its history prepares the image, which a newer worker must replay.
    const history = await loadHistory('shot-success.v2.binpb');
    const payload = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    payload.data = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload.data!).toString()), imageAsIs: true }));
    await expect(Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, 'shot-success-asked-as-is')).resolves.toBeUndefined();
  });
});
