/**
 * Opens the gallery in a real browser (Debian's Chromium, driven by playwright-core) and checks what a person
 * would: every player loads its video, every picture shows, failed shots stand out, and nothing is fetched
 * from the network. Leaves a screenshot in test-results/gallery-screenshot for a human look.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFfmpeg } from '../src/media/binaries';
import { extractThumbnails } from '../src/media/video';
import { outputPaths, relativeToRun, taskKey, tasksJsonPath, videosDir } from '../src/runs/paths';
import type { TaskRecord, TaskRecordEntry } from '../src/runs/taskRecord';
import { writeReports } from '../src/reports';
import { inPage, launchChromium, requireBrowser } from './helpers/browser';
import { makeRunFolder } from './helpers/runFolder';
import { artefactPath } from './helpers/scratch';

let root: string;
let galleryPath: string;
let browser: Browser | undefined;

beforeAll(async () => {
  const runDir = await fs.realpath(await makeRunFolder([
    { episode: 1, shot: 1, prompt: 'The hero turns to the window.' },
    { episode: 1, shot: 2, prompt: '镜头缓慢拉远，雨夜街头。' },
    { episode: 1, shot: 3, prompt: 'A crowd scene the moderation refused.' },
    { episode: 1, shot: 4, prompt: 'Not started yet.' },
    { episode: 2, shot: 1, prompt: 'Second episode opens <b>here</b> & now.' },
  ], 'run #1 (gallery)'));
  root = path.dirname(runDir);
  const record: TaskRecord = {};
  const base = (episode: number, shot: number): TaskRecordEntry => ({
    task_id: `task-${episode}-${shot}`, status: 'SUCCESS', image_path: '', prompt: '', video_url: null, video_path: null, thumbnail_path: null,
    submit_time: '2025-01-17 10:30:15', complete_time: '2025-01-17 10:31:40', error_message: null, episode, shot, take: 1,
    model: 'wan2.2-i2v-flash', resolution: '720P', error_code: null, updated_at: '2025-01-17T02:31:40.000Z',
  });
  for (const [episode, shot, pattern] of [[1, 1, 'testsrc'], [1, 2, 'smptebars'], [2, 1, 'rgbtestsrc']] as const) {
    const out = outputPaths(runDir, episode, shot);
    await fs.mkdir(out.episodeDir, { recursive: true });
    await runFfmpeg(['-y', '-f', 'lavfi', '-i', `${pattern}=size=320x240:rate=30`, '-t', '1', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', out.videoPath]);
    await extractThumbnails(out.videoPath, out.thumbnailPath, out.smallThumbnailPath);
    record[taskKey(episode, shot)] = { ...base(episode, shot), video_path: relativeToRun(runDir, out.videoPath), thumbnail_path: relativeToRun(runDir, out.thumbnailPath) };
  }
  record[taskKey(1, 3)] = {
    ...base(1, 3), status: 'FAILED', complete_time: '2025-01-17 10:30:50',
    error_code: 'DataInspectionFailed', error_message: 'Input data may contain inappropriate content.',
  };
  await fs.writeFile(tasksJsonPath(runDir), JSON.stringify(record));
  ({ galleryPath } = await writeReports(runDir));
  expect(galleryPath).toBe(path.join(videosDir(runDir), 'index.html'));

  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await fs.rm(root, { recursive: true, force: true });
});

describe('the HTML gallery in Chromium', () => {
  it('plays every video, shows every picture, marks failed shots, and fetches nothing from the network', async () => {
    const page = await requireBrowser(browser).newPage({ viewport: { width: 1280, height: 900 } });
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    const consoleErrors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));

    await page.goto(pathToFileURL(galleryPath).href);
    // Players with preload="metadata" report readyState ≥ 1 (HAVE_METADATA) once their file has been read.
    await page.waitForFunction("[...document.querySelectorAll('video')].every((v) => v.readyState >= 1 || v.error)", undefined, { timeout: 15_000 });
    const videos = await inPage<Array<{ src: string; readyState: number; error: number | null; duration: number; width: number }>>(page, `
      [...document.querySelectorAll('video')].map((v) => ({
        src: v.getAttribute('src'), readyState: v.readyState, error: v.error ? v.error.code : null, duration: v.duration, width: v.videoWidth,
      }))`);
    expect(videos.map((v) => v.src)).toEqual([
      'Episode-01/Episode-01-Shot-001.mp4', 'Episode-01/Episode-01-Shot-002.mp4', 'Episode-02/Episode-02-Shot-001.mp4',
    ]);
    for (const v of videos) expect(v, v.src).toMatchObject({ error: null, width: 320, duration: 1 });
    for (const v of videos) expect(v.readyState).toBeGreaterThanOrEqual(1);

    // Posters (the small thumbnails) and the source stills of shots without a video all decode.
    await page.waitForFunction('[...document.images].every((i) => i.complete)', undefined, { timeout: 10_000 });
    const images = await inPage<Array<{ src: string; width: number }>>(page, `
      [...document.images].map((i) => ({ src: i.getAttribute('src'), width: i.naturalWidth }))`);
    expect(images.map((i) => i.src)).toEqual(['../05_generated_images/Episode-01/Episode-01-Shot-003.png', '../05_generated_images/Episode-01/Episode-01-Shot-004.png']);
    for (const i of images) expect(i.width, i.src).toBeGreaterThan(0);
    const posters = await inPage<number[]>(page, `
      Promise.all([...document.querySelectorAll('video')].map((v) => new Promise((resolve) => {
        const img = new Image();
        img.onload = () => resolve(img.naturalWidth);
        img.onerror = () => resolve(0);
        img.src = v.poster;
      })))`);
    expect(posters).toEqual([150, 150, 150]);

    // The failed shot: a thick red border and its error in red; the others have neither.
    const cards = await inPage<Array<{ key: string; border: string; error: { text: string; color: string; visible: boolean } | null }>>(page, `
      [...document.querySelectorAll('article.shot')].map((a) => {
        const style = getComputedStyle(a);
        const error = a.querySelector('.error');
        return {
          key: a.getAttribute('data-key'),
          border: style.borderTopWidth + ' ' + style.borderTopColor,
          error: error ? { text: error.textContent, color: getComputedStyle(error).color, visible: error.offsetHeight > 0 } : null,
        };
      })`);
    const failed = cards.find((c) => c.key === 'Episode-01-003')!;
    expect(failed.border).toBe('3px rgb(198, 40, 40)');
    expect(failed.error).toEqual({ text: '[DataInspectionFailed] Input data may contain inappropriate content.', color: 'rgb(142, 27, 27)', visible: true });
    for (const c of cards.filter((c) => c.key !== 'Episode-01-003')) {
      expect(c.border, c.key).toBe('1px rgb(217, 220, 227)');
      expect(c.error).toBeNull();
    }
    expect(await page.textContent('article[data-key="Episode-02-001"] .prompt')).toBe('Second episode opens <b>here</b> & now.');

    expect(requests.filter((u) => !u.startsWith('file://'))).toEqual([]);
    expect(consoleErrors).toEqual([]);

    const shots = artefactPath('gallery-screenshot');
    await fs.mkdir(shots, { recursive: true });
    const screenshot = path.join(shots, 'gallery.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    expect((await fs.stat(screenshot)).size).toBeGreaterThan(10_000);
    console.info(`Gallery screenshot: ${screenshot}`);
  });
});
