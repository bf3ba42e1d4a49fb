/**
 * The README's promise, through the real `i2v` binary: the demo turns the example run folder into 6 videos
 * and 6 thumbnails, and running it again submits nothing new.
 */
import { execFile } from 'node:child_process';
import { cp, readdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { readTaskRecord } from '../src/runs/taskRecord';
import { probeVideo } from '../src/media/video';
import { imageDistance } from './helpers/runFolder';
import { scratchDir } from './helpers/scratch';

const run = promisify(execFile);
const root = path.join(__dirname, '..');

describe('npm run demo', () => {
  it('produces 6 videos and thumbnails, then a second run submits nothing', async () => {
    const work = await scratchDir('i2v-demo-');
    const runDir = path.join(work, 'demo-run');
    // Inputs only: a developer's earlier demo outputs must not make the first run look finished.
    for (const dir of ['05_generated_images', '07_video_prompts']) {
      await cp(path.join(root, 'examples', 'demo-run', dir), path.join(runDir, dir), { recursive: true });
    }
    // A private embedded server on free ports, so the test never meets a developer's own server.
    const env = { ...process.env, I2V_STATE_DIR: path.join(work, 'state'), I2V_TEMPORAL_PORT: '0', I2V_TEMPORAL_UI_PORT: '0', TEMPORAL_ADDRESS: '' };
    const demo = () => run(process.execPath, [path.join(root, 'bin', 'i2v.js'), 'demo', '--run-dir', runDir], { env, timeout: 240_000 });

    const first = await demo();
    expect(first.stdout).toMatch(/Emulator: 6 paid submission\(s\)/);
    // Off a terminal, progress is plain timestamped lines at a sane rate.
    expect(first.stdout.trim().split('\n').length).toBeLessThan(200);
    expect(first.stdout).toMatch(/^\[\d\d:\d\d:\d\d\] Episode-01 \d\/3 done · /m);
    const records = await readTaskRecord(runDir);
    expect(Object.values(records).filter((r) => r.status === 'SUCCESS')).toHaveLength(6);
    for (const record of Object.values(records)) {
      expect((await probeVideo(path.join(runDir, record.video_path!))).codec).toBe('h264');
      expect(await imageDistance(path.join(runDir, record.thumbnail_path!), path.join(runDir, record.image_path))).toBeLessThan(12);
    }
    const files = await readdir(path.join(runDir, '08_generated_videos'), { recursive: true });
    expect(files.filter((f) => String(f).endsWith('.mp4'))).toHaveLength(6);
    expect(files.filter((f) => /Shot-\d+-thumbnail\.png$/.test(String(f)))).toHaveLength(6);

    const second = await demo();
    expect(second.stdout).toMatch(/Emulator: 0 paid submission\(s\)/);
  }, 300_000);
});
