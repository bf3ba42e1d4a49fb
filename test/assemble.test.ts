import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assembleCommand } from '../src/cli/assemble';
import { ffprobePath, runFfmpeg } from '../src/media/binaries';
import { assembleEpisode } from '../src/media/assemble';
import { probeVideo } from '../src/media/video';
import { outputPaths, relativeToRun, taskKey, tasksJsonPath, videosDir } from '../src/runs/paths';
import type { TaskRecord, TaskRecordEntry } from '../src/runs/taskRecord';
import { makeRunFolder } from './helpers/runFolder';

interface ClipSpec {
  shot: number;
  /** lavfi colour name; each shot gets its own so the order can be read back from the frames. */
  color: string;
  size?: string;
  seconds?: number;
  /** Add a 440 Hz tone. */
  audio?: boolean;
  status?: TaskRecordEntry['status'];
}

const COLORS: Record<string, [number, number, number]> = { red: [255, 0, 0], lime: [0, 255, 0], blue: [0, 0, 255] };

let runDir: string;
beforeAll(async () => {
  // Planned shots per episode; episode 4's last one never runs.
  const planned: Record<number, number> = { 1: 3, 2: 3, 3: 2, 4: 4 };
  const shots = Object.entries(planned).flatMap(([episode, count]) =>
    Array.from({ length: count }, (_, i) => ({ episode: Number(episode), shot: i + 1, prompt: `e${episode}s${i + 1}`, width: 64, height: 36 })));
  runDir = await fs.realpath(await makeRunFolder(shots));
});
afterAll(async () => {
  await fs.rm(path.dirname(runDir), { recursive: true, force: true });
});

/** Renders the episode's clips where the pipeline puts them and records them in tasks.json. */
async function episodeWith(episode: number, clips: ClipSpec[]): Promise<void> {
  const record: TaskRecord = JSON.parse(await fs.readFile(tasksJsonPath(runDir), 'utf8').catch(() => '{}')) as TaskRecord;
  for (const clip of clips) {
    const out = outputPaths(runDir, episode, clip.shot);
    const status = clip.status ?? 'SUCCESS';
    if (status === 'SUCCESS') {
      await fs.mkdir(out.episodeDir, { recursive: true });
      const args = ['-y', '-f', 'lavfi', '-i', `color=c=${clip.color}:size=${clip.size ?? '320x240'}:rate=30`];
      if (clip.audio) args.push('-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100');
      args.push('-t', String(clip.seconds ?? 1), '-pix_fmt', 'yuv420p', '-c:v', 'libx264');
      if (clip.audio) args.push('-c:a', 'aac', '-shortest');
      await runFfmpeg([...args, out.videoPath]);
    }
    record[taskKey(episode, clip.shot)] = {
      task_id: `t-${episode}-${clip.shot}`, status, image_path: 'x.png', prompt: 'p', video_url: null,
      video_path: status === 'SUCCESS' ? relativeToRun(runDir, out.videoPath) : null, thumbnail_path: null,
      submit_time: null, complete_time: null,
      error_message: status === 'FAILED' ? 'Provider said no.' : null, error_code: status === 'FAILED' ? 'InternalError' : null,
      episode, shot: clip.shot, take: 1, updated_at: new Date().toISOString(),
    };
  }
  await fs.mkdir(videosDir(runDir), { recursive: true });
  await fs.writeFile(tasksJsonPath(runDir), JSON.stringify(record));
}

/** The mean colour of the frame at `seconds`, as RGB 0–255. */
async function colourAt(file: string, seconds: number): Promise<number[]> {
  const rgb = await runFfmpeg(['-ss', String(seconds), '-i', file, '-frames:v', '1', '-vf', 'scale=1:1', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1']);
  return [...rgb];
}

function expectColour(actual: number[], name: string): void {
  const want = COLORS[name]!;
  for (let i = 0; i < 3; i++) expect(Math.abs(actual[i]! - want[i]!), `${name} channel ${i} in ${actual.join(',')}`).toBeLessThan(40);
}

async function streams(file: string): Promise<Array<{ codec_type: string }>> {
  const { stdout } = await promisify(execFile)(ffprobePath(), ['-v', 'error', '-show_streams', '-of', 'json', file]);
  return (JSON.parse(stdout) as { streams: Array<{ codec_type: string }> }).streams;
}

describe('assembleEpisode', () => {
  it('joins clips with equal parameters without re-encoding, in shot order', async () => {
    // Rendered out of order on purpose: the file must follow the shot numbers.
    await episodeWith(1, [{ shot: 3, color: 'blue' }, { shot: 1, color: 'red' }, { shot: 2, color: 'lime' }]);
    const result = await assembleEpisode(runDir, 1);

    expect(result).toMatchObject({ path: path.join(videosDir(runDir), 'Episode-01.mp4'), clips: 3, missing: [], reencoded: false });
    const probe = await probeVideo(result.path!);
    expect(Math.abs(probe.durationSeconds - 3)).toBeLessThanOrEqual(0.3);
    expect(result.durationSeconds).toBeCloseTo(probe.durationSeconds, 6);
    expect([probe.width, probe.height]).toEqual([320, 240]);
    expectColour(await colourAt(result.path!, 0.5), 'red');
    expectColour(await colourAt(result.path!, 1.5), 'lime');
    expectColour(await colourAt(result.path!, 2.5), 'blue');
    // Only the result is left: no temp file beside it, no work folder.
    expect((await fs.readdir(videosDir(runDir))).filter((n) => n.startsWith('.Episode'))).toEqual([]);
    expect((await fs.readdir(path.join(videosDir(runDir), '.i2v')).catch(() => [])).filter((n) => n.startsWith('assemble-'))).toEqual([]);
  });

  it('re-encodes clips of different sizes to the most common size, keeping every second', async () => {
    await episodeWith(2, [
      { shot: 1, color: 'red', size: '320x240' },
      { shot: 2, color: 'lime', size: '640x360' },
      { shot: 3, color: 'blue', size: '320x240', seconds: 2 },
    ]);
    const result = await assembleEpisode(runDir, 2);

    expect(result).toMatchObject({ clips: 3, missing: [], reencoded: true });
    const probe = await probeVideo(result.path!);
    expect(Math.abs(probe.durationSeconds - 4)).toBeLessThanOrEqual(0.3);
    expect([probe.width, probe.height, probe.codec]).toEqual([320, 240, 'h264']);
    expectColour(await colourAt(result.path!, 1.5), 'lime'); // the 640×360 clip, scaled (its 16:9 letterboxed into 4:3)
    expectColour(await colourAt(result.path!, 3), 'blue');
  });

  it('gives silent clips a silent track when another clip has sound', async () => {
    await episodeWith(3, [{ shot: 1, color: 'red', audio: true }, { shot: 2, color: 'blue' }]);
    const result = await assembleEpisode(runDir, 3);

    expect(result).toMatchObject({ clips: 2, reencoded: true });
    expect((await streams(result.path!)).map((s) => s.codec_type).sort()).toEqual(['audio', 'video']);
    expect(Math.abs((await probeVideo(result.path!)).durationSeconds - 2)).toBeLessThanOrEqual(0.2);
  });

  it('reports missing shots (failed, unfinished, not started, file gone) and assembles the rest', async () => {
    await episodeWith(4, [
      { shot: 1, color: 'red' },
      { shot: 2, color: 'lime', status: 'FAILED' },
      { shot: 3, color: 'blue' },
    ]);
    await fs.rm(outputPaths(runDir, 4, 3).videoPath);
    const result = await assembleEpisode(runDir, 4);

    expect(result.clips).toBe(1);
    expect(result.missing).toEqual([
      { key: 'Episode-04-002', reason: 'failed: [InternalError] Provider said no.' },
      { key: 'Episode-04-003', reason: 'video file missing: 08_generated_videos/Episode-04/Episode-04-Shot-003.mp4' },
      { key: 'Episode-04-004', reason: 'not started' },
    ]);
    expect(Math.abs((await probeVideo(result.path!)).durationSeconds - 1)).toBeLessThanOrEqual(0.1);
  });
});

describe('i2v assemble', () => {
  it('exits 0 when every shot is in, 1 listing each missing shot otherwise', async () => {
    const capture = () => {
      const out = new PassThrough();
      let text = '';
      out.on('data', (c: Buffer) => (text += c.toString()));
      return { out, text: () => text };
    };
    const ok = capture();
    expect(await assembleCommand(runDir, { episodes: [1, 2] }, ok.out)).toBe(0);
    expect(ok.text()).toMatch(/^Episode-01: 3 clip\(s\), 3\.0 s, joined without re-encoding → .*Episode-01\.mp4\nEpisode-02: 3 clip\(s\), 4\.0 s, re-encoded to a common format → .*Episode-02\.mp4\n$/);

    const partial = capture();
    expect(await assembleCommand(runDir, { episodes: [1, 4] }, partial.out)).toBe(1);
    expect(partial.text()).toContain('Episode-04: 1 clip(s)');
    expect(partial.text()).toContain('3 shot(s) missing from the file:\n  ✗ Episode-04-002: failed: [InternalError] Provider said no.\n');
  });
});
