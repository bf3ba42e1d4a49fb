/**
 * `i2v assemble <runDir> [--episodes 1,2]`: joins each episode's finished shots into `08_generated_videos/Episode-NN.mp4`.
 *
 * An episode with missing shots (failed, unfinished, video gone) is still assembled from the shots that exist,
 * so it can be reviewed, and every missing shot is listed; the exit code is then 1, so scripts never mistake a
 * partial episode for a complete one. 0 means every episode was assembled with all its shots. An episode ffmpeg
 * cannot join is reported and the others still go ahead (exit 1).
 */
import { AssembleError, assembleEpisode, type AssembleResult } from '../media/assemble';
import { episodeName } from '../runs/paths';
import { scanRun } from '../runs/scan';
import { readTaskRecord } from '../runs/taskRecord';

export async function assembleCommand(runDir: string, opts: { episodes?: number[] }, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const plan = await scanRun(runDir, { episodes: opts.episodes });
  let episodes = opts.episodes;
  if (!episodes) {
    const recorded = Object.values(await readTaskRecord(plan.runDir)).map((e) => e.episode).filter(Number.isSafeInteger);
    episodes = [...new Set([...plan.episodes.map((e) => e.episode), ...recorded])].sort((a, b) => a - b);
  }
  if (episodes.length === 0) {
    out.write('No episodes to assemble.\n');
    return 1;
  }
  let complete = true;
  for (const episode of episodes) {
    const name = episodeName(episode);
    let result: AssembleResult;
    try {
      result = await assembleEpisode(plan.runDir, episode);
    } catch (err) {
      // One episode that will not join must not stop the others.
      if (!(err instanceof AssembleError)) throw err;
      out.write(`${name}: ✗ ${err.message}\n`);
      complete = false;
      continue;
    }
    if (result.path) {
      const how = result.reencoded ? 're-encoded to a common format' : 'joined without re-encoding';
      out.write(`${name}: ${result.clips} clip(s), ${result.durationSeconds?.toFixed(1)} s, ${how} → ${result.path}\n`);
    } else {
      out.write(`${name}: nothing to assemble (no shot has a finished video).\n`);
    }
    if (!result.path) complete = false;
    if (result.missing.length > 0) {
      complete = false;
      out.write(`  ${result.missing.length} shot(s) missing${result.path ? ' from the file' : ''}:\n`);
      for (const m of result.missing) out.write(`  ✗ ${m.key}: ${m.reason}\n`);
    }
  }
  return complete ? 0 : 1;
}
