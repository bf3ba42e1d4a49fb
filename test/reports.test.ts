import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import ExcelJS from 'exceljs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../src/errors';
import { runFfmpeg } from '../src/media/binaries';
import { extractThumbnails } from '../src/media/video';
import { outputPaths, relativeToRun, taskKey, tasksJsonPath, videosDir } from '../src/runs/paths';
import { scanRun } from '../src/runs/scan';
import type { TaskRecord, TaskRecordEntry } from '../src/runs/taskRecord';
import { writeReports } from '../src/reports';
import { writeReportsInChild } from '../src/reports/child';
import { SUMMARY_HEADER_ROW } from '../src/reports/excel';
import { buildRunReport, linkFromReports } from '../src/reports/model';
import { makeRunFolder } from './helpers/runFolder';

const roots: string[] = [];
afterAll(async () => {
  for (const root of roots) await fs.rm(path.dirname(root), { recursive: true, force: true });
});

/** A real 1 s H.264 clip with its thumbnails where the pipeline puts them; returns the paths as tasks.json stores them. */
async function finishedShot(runDir: string, episode: number, shot: number) {
  const out = outputPaths(runDir, episode, shot);
  await fs.mkdir(out.episodeDir, { recursive: true });
  await runFfmpeg(['-y', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=30', '-t', '1', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', out.videoPath]);
  await extractThumbnails(out.videoPath, out.thumbnailPath, out.smallThumbnailPath);
  return { video_path: relativeToRun(runDir, out.videoPath), thumbnail_path: relativeToRun(runDir, out.thumbnailPath) };
}

function entry(episode: number, shot: number, fields: Partial<TaskRecordEntry>): TaskRecordEntry {
  return {
    task_id: `task-${episode}-${shot}`,
    status: 'RUNNING',
    image_path: `05_generated_images/Episode-0${episode}/Episode-0${episode}-Shot-00${shot}.png`,
    prompt: `prompt ${episode}/${shot}`,
    video_url: null,
    video_path: null,
    thumbnail_path: null,
    submit_time: '2025-01-17 10:30:15',
    complete_time: null,
    error_message: null,
    episode,
    shot,
    take: 1,
    model: 'wan2.2-i2v-flash',
    resolution: '720P',
    error_code: null,
    updated_at: '2025-01-17T02:32:45.000Z',
    ...fields,
  };
}

async function writeRecord(runDir: string, record: TaskRecord): Promise<void> {
  await fs.mkdir(videosDir(runDir), { recursive: true });
  await fs.writeFile(tasksJsonPath(runDir), JSON.stringify(record, null, 2));
}

async function loadWorkbook(file: string): Promise<ExcelJS.Workbook> {
  const workbook = new ExcelJS.Workbook();
  await workbook.xlsx.load((await fs.readFile(file)) as unknown as ExcelJS.Buffer);
  return workbook;
}

const HOSTILE_PROMPT = 'Slow push-in <script>alert(1)</script> & "quotes" \'too\'\n第二行';

describe('reports of a run (Excel + gallery)', () => {
  let runDir: string;
  let excelPath: string;
  let galleryPath: string;

  beforeAll(async () => {
    runDir = await makeRunFolder([
      { episode: 1, shot: 1, prompt: 'unused: the record has the submitted prompt' },
      { episode: 1, shot: 2, prompt: 'two' },
      { episode: 1, shot: 3, prompt: 'three' },
      { episode: 1, shot: 4, prompt: 'four, never started' },
      { episode: 2, shot: 1, prompt: 'ep2 one' },
      { episode: 2, shot: 2, prompt: 'ep2 two' },
    ]);
    roots.push(runDir);
    const done = { status: 'SUCCESS' as const, complete_time: '2025-01-17 10:32:45', video_url: 'https://example.test/v.mp4' };
    await writeRecord(runDir, {
      [taskKey(1, 1)]: entry(1, 1, { ...done, ...(await finishedShot(runDir, 1, 1)), prompt: HOSTILE_PROMPT }),
      [taskKey(1, 2)]: entry(1, 2, { ...done, ...(await finishedShot(runDir, 1, 2)), take: 2 }),
      [taskKey(1, 3)]: entry(1, 3, { status: 'FAILED', complete_time: '2025-01-17 10:31:00', error_code: 'DataInspectionFailed', error_message: 'Input data may contain inappropriate content.' }),
      // The cost tasks.json recorded (5 billed seconds) wins over one measured from the 1 s file.
      [taskKey(2, 1)]: entry(2, 1, { ...done, ...(await finishedShot(runDir, 2, 1)), cost: 1, currency: 'CNY' }),
      [taskKey(2, 2)]: entry(2, 2, { status: 'RUNNING' }),
    });
    // As the worker writes them: from a child process.
    ({ excelPath, galleryPath } = await writeReportsInChild(runDir));
  });

  it('embeds one thumbnail per finished shot, anchored in that shot\'s own row', async () => {
    expect(excelPath).toBe(path.join(videosDir(await fs.realpath(runDir)), 'report.xlsx'));
    const workbook = await loadWorkbook(excelPath);
    const sheet = workbook.getWorksheet('Episode-01')!;
    expect([2, 3, 4, 5].map((r) => sheet.getRow(r).getCell(2).value)).toEqual([
      'Episode-01-Shot-001', 'Episode-01-Shot-002', 'Episode-01-Shot-003', 'Episode-01-Shot-004',
    ]);
    const images = sheet.getImages();
    // Rows 2 and 3 (0-based 1 and 2) are the finished shots; the failed and unstarted ones have no picture.
    expect(images.map((i) => i.range.tl.nativeRow).sort()).toEqual([1, 2]);
    // Inside the thumbnail cell of its row, top-left and bottom-right.
    expect(images.every((i) => i.range.tl.nativeCol === 0 && i.range.br.nativeCol === 0 && i.range.br.nativeRow === i.range.tl.nativeRow)).toBe(true);
    for (const image of images) {
      const shot = image.range.tl.nativeRow; // row 2 → shot 1
      const embedded = Buffer.from(workbook.getImage(Number(image.imageId)).buffer as unknown as Uint8Array);
      expect(embedded.equals(await fs.readFile(outputPaths(runDir, 1, shot).smallThumbnailPath))).toBe(true);
    }
    expect(sheet.getRow(2).height).toBeGreaterThan(60); // tall enough to show the 150×113 picture (in points)
  });

  it('lists prompt, status, take, task id, a relative video link, duration, resolution, time and cost per shot', async () => {
    const sheet = (await loadWorkbook(excelPath)).getWorksheet('Episode-01')!;
    const header = (sheet.getRow(1).values as ExcelJS.CellValue[]).slice(1);
    expect(header).toEqual(['Thumbnail', 'Shot', 'Prompt', 'Status', 'Take', 'Task ID', 'Video', 'Duration (s)', 'Resolution', 'Time to generate', 'Cost', 'Error']);
    const cells = (r: number) => Array.from({ length: 12 }, (_, i) => sheet.getRow(r).getCell(i + 1).value);
    const [, , prompt, status, take, taskId, video, duration, resolution, time, cost, error] = cells(3);
    expect([status, take, taskId, duration, resolution, cost, error]).toEqual(['SUCCESS', 2, 'task-1-2', 1, '320×240', 0.2, null]);
    expect(prompt).toBe('prompt 1/2');
    // 10:30:15 → 10:32:45 as an Excel duration (a fraction of a day, which exceljs reads back as a 1899 date).
    expect((time as Date).toISOString()).toBe('1899-12-30T00:02:30.000Z');
    expect(sheet.getRow(3).getCell(10).numFmt).toBe('[h]:mm:ss');
    expect(video).toEqual({ text: 'Episode-01-Shot-002.mp4', hyperlink: 'Episode-01/Episode-01-Shot-002.mp4' });
    // The link is relative to the report itself, so it resolves to the video.
    await expect(fs.stat(path.join(path.dirname(excelPath), (video as ExcelJS.CellHyperlinkValue).hyperlink))).resolves.toBeTruthy();
    expect(cells(2)[2]).toBe(HOSTILE_PROMPT);

    const failed = cells(4);
    expect(failed[3]).toBe('FAILED');
    expect(failed[6]).toBeNull(); // no video link
    expect(failed[10]).toBeNull(); // failed tasks are not billed
    expect(failed[11]).toBe('[DataInspectionFailed] Input data may contain inappropriate content.');
    expect(cells(5)[3]).toBe('NOT_STARTED');
  });

  it('sums shots, outcomes, spend and time per episode and for the run on the summary sheet', async () => {
    const sheet = (await loadWorkbook(excelPath)).getWorksheet('Summary')!;
    expect((sheet.getRow(SUMMARY_HEADER_ROW).values as ExcelJS.CellValue[]).slice(1)).toEqual([
      'Episode', 'Shots', 'Done', 'Failed', 'In progress', 'Not started', 'Spend', 'Video (s)', 'Generation time', 'Elapsed',
    ]);
    const line = (r: number) => (sheet.getRow(SUMMARY_HEADER_ROW + r).values as ExcelJS.CellValue[]).slice(1);
    // Episode 1: two 1 s clips of wan2.2-i2v-flash at 720P with no recorded cost, 0.20 CNY each (config/prices.json).
    expect(line(1)).toEqual(['Episode-01', 4, 2, 1, 0, 1, 0.4, 2, '5 min 00 s', '2 min 30 s']);
    expect(line(2)).toEqual(['Episode-02', 2, 1, 0, 1, 0, 1, 1, '2 min 30 s', '2 min 30 s']);
    expect(line(3)).toEqual(['Total', 6, 3, 1, 1, 1, 1.4, 3, '7 min 30 s', '2 min 30 s']);
    expect(sheet.getRow(SUMMARY_HEADER_ROW + 3).getCell(7).numFmt).toContain('CNY');
  });

  it('writes a gallery with relative players, escaped text and failed shots marked', async () => {
    expect(galleryPath).toBe(path.join(path.dirname(excelPath), 'index.html'));
    const html = await fs.readFile(galleryPath, 'utf8');
    expect(html).toContain('<video controls preload="metadata" src="Episode-01/Episode-01-Shot-001.mp4" poster="Episode-01/Episode-01-Shot-001-thumbnail-small.png"></video>');
    expect(html).not.toContain('<script');
    expect(html).toContain('&#60;script&#62;alert(1)&#60;/script&#62; &#38; &#34;quotes&#34; &#39;too&#39;');
    expect(html).toMatch(/<article class="shot failed" id="Episode-01-003"[^>]*data-status="FAILED">/);
    expect(html).toContain('<p class="error" role="alert">[DataInspectionFailed] Input data may contain inappropriate content.</p>');
    // A shot with no video shows its source still, relative to the page.
    expect(html).toContain('src="../05_generated_images/Episode-01/Episode-01-Shot-004.png"');
    expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);
  });

  it('leaves no temp files or locks behind', async () => {
    const names = await fs.readdir(path.dirname(excelPath));
    expect(names.sort()).toEqual(['Episode-01', 'Episode-02', 'index.html', 'report.xlsx', 'tasks.json']);
  });

  it('brings back the report process\'s error, a corrupt tasks.json still named and categorised', async () => {
    const broken = await makeRunFolder([{ episode: 1, shot: 1, prompt: 'one' }]);
    await fs.mkdir(videosDir(broken), { recursive: true });
    await fs.writeFile(tasksJsonPath(broken), '{"Episode-01-001": ');
    const err = await writeReportsInChild(broken).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(err).toMatchObject({ category: 'corrupt-json', message: expect.stringContaining(tasksJsonPath(broken)) });
  });
});

describe('report model', () => {
  it('shows planned shots without a record, record entries no longer planned, and finished shots whose video is gone', async () => {
    const runDir = await makeRunFolder([{ episode: 1, shot: 1, prompt: 'planned, not started' }, { episode: 1, shot: 2, prompt: 'two' }]);
    roots.push(runDir);
    const plan = await scanRun(runDir);
    const records: TaskRecord = {
      [taskKey(1, 2)]: entry(1, 2, { status: 'SUCCESS', video_path: '08_generated_videos/Episode-01/Episode-01-Shot-002.mp4', complete_time: '2025-01-17 10:31:15' }),
      [taskKey(1, 9)]: entry(1, 9, { status: 'SUCCESS', video_path: '08_generated_videos/Episode-01/Episode-01-Shot-009.mp4', complete_time: '2025-01-17 10:40:15' }),
    };
    const files = new Map([
      [taskKey(1, 2), { videoProblem: 'Video file missing on disk: 08_generated_videos/Episode-01/Episode-01-Shot-002.mp4' }],
      [taskKey(1, 9), { video: { path: '08_generated_videos/Episode-01/Episode-01-Shot-009.mp4', durationSeconds: 5.0625, width: 1280, height: 720 } }],
    ]);
    const report = buildRunReport({ plan, records, files, generatedAt: new Date(0) });
    const rows = report.episodes[0]!.rows;
    expect(rows.map((r) => [r.shot, r.status, r.planned])).toEqual([[1, 'NOT_STARTED', true], [2, 'SUCCESS', true], [9, 'SUCCESS', false]]);
    expect(rows[0]!.prompt).toBe('planned, not started');
    expect(rows[1]!.error).toMatch(/missing on disk/);
    expect(rows[1]!).toMatchObject({ cost: [], paidTakes: 1, unpricedTakes: 1 }); // no recorded cost and no video to measure
    expect(rows[2]!.cost).toEqual([{ amount: 1, currency: 'CNY' }]); // billed as 5 whole seconds × 0.20
    expect(report.totals).toMatchObject({ shots: 3, done: 2, notStarted: 1, spend: [{ amount: 1, currency: 'CNY' }], unpriced: 1, elapsedSeconds: 600 });
    expect(linkFromReports('05_generated_images/Episode-01/a.png')).toBe('../05_generated_images/Episode-01/a.png');
  });
});

describe('spend over takes', () => {
  it('adds up every finished take of a shot, earlier ones included, and bills no failed take', async () => {
    const runDir = await makeRunFolder([{ episode: 1, shot: 1, prompt: 'regenerated twice' }]);
    roots.push(runDir);
    const take = (n: number, status: TaskRecordEntry['status'], cost: number | null) =>
      ({ take: n, task_id: `t${n}`, status, submit_time: null, complete_time: null, video_path: null, cost, currency: cost ? 'CNY' : undefined, error_code: null });
    const records: TaskRecord = {
      [taskKey(1, 1)]: entry(1, 1, {
        status: 'RUNNING', take: 4, cost: null,
        takes: [take(1, 'SUCCESS', 1), take(2, 'FAILED', 0), take(3, 'SUCCESS', 2.4), take(4, 'RUNNING', null)],
      }),
    };
    const report = buildRunReport({ plan: await scanRun(runDir), records, files: new Map(), generatedAt: new Date(0) });
    expect(report.episodes[0]!.rows[0]).toMatchObject({ status: 'RUNNING', take: 4, cost: [{ amount: 3.4, currency: 'CNY' }], paidTakes: 2, unpricedTakes: 0 });
    expect(report.totals.spend).toEqual([{ amount: 3.4, currency: 'CNY' }]);
  });
});

describe('a 100-shot episode', () => {
  it('embeds a thumbnail in each of the 100 rows and stays under 5 MB', async () => {
    const shots = Array.from({ length: 100 }, (_, i) => ({ episode: 3, shot: i + 1, prompt: `镜头缓慢推进，第 ${i + 1} 个镜头，人物转身看向窗外。`.repeat(4), width: 64, height: 36 }));
    const runDir = await makeRunFolder(shots);
    roots.push(runDir);
    const first = await finishedShot(runDir, 3, 1);
    const record: TaskRecord = {};
    for (const { shot } of shots) {
      const out = outputPaths(runDir, 3, shot);
      if (shot > 1) {
        await fs.copyFile(outputPaths(runDir, 3, 1).videoPath, out.videoPath);
        await fs.copyFile(outputPaths(runDir, 3, 1).thumbnailPath, out.thumbnailPath);
        await fs.copyFile(outputPaths(runDir, 3, 1).smallThumbnailPath, out.smallThumbnailPath);
      }
      record[taskKey(3, shot)] = entry(3, shot, {
        status: 'SUCCESS', complete_time: '2025-01-17 10:32:45',
        video_path: first.video_path.replace('Shot-001', `Shot-${String(shot).padStart(3, '0')}`),
        thumbnail_path: first.thumbnail_path.replace('Shot-001', `Shot-${String(shot).padStart(3, '0')}`),
      });
    }
    await writeRecord(runDir, record);
    const { excelPath } = await writeReports(runDir);

    expect((await fs.stat(excelPath)).size).toBeLessThan(5 * 1024 * 1024);
    const workbook = await loadWorkbook(excelPath);
    const images = workbook.getWorksheet('Episode-03')!.getImages();
    expect(images).toHaveLength(100);
    expect(new Set(images.map((i) => i.range.tl.nativeRow))).toEqual(new Set(Array.from({ length: 100 }, (_, i) => i + 1)));
    // Each row carries its own copy of its thumbnail (not one shared picture).
    expect(new Set(images.map((i) => i.imageId)).size).toBe(100);
  });
});
