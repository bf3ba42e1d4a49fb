import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import sharp, { type Sharp } from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_GENERATION } from '../src/config';
import { ConfigError, ExitError } from '../src/errors';
import { dataUrlLength, DEFAULT_IMAGE_LIMITS, prepareImage } from '../src/media/image';
import { estimateShotCost, formatMoney, modelLimits, priceOf, PRICES_FILE, readPriceTable } from '../src/pricing';
import { readTaskRecord, updateTaskRecord } from '../src/runs/taskRecord';
import { inspectRun, validateRun, type ValidateOptions, type ValidationReport } from '../src/runs/validate';
import { preflight, recordInputErrors, validateCommand } from '../src/cli/validate';
import { PROJECT_ROOT } from '../src/temporal/binaries';
import { assertInputsUnchanged, snapshotInputs } from './helpers/inputs';
import { bmp } from './helpers/images';
import { makeRunFolder } from './helpers/runFolder';

let tmpRoot: string;
let messy: string;

const OPTS: ValidateOptions = {
  generation: DEFAULT_GENERATION,
  maxInFlight: 3,
  truncatePrompts: false,
  imageLimits: DEFAULT_IMAGE_LIMITS,
};
const LENIENT: ValidateOptions = { ...OPTS, truncatePrompts: true, imageLimits: { ...DEFAULT_IMAGE_LIMITS, upscaleSmall: true } };

/** 790 CJK characters and 20 emoji: 810 characters (code points), 830 UTF-16 units. */
const LONG_PROMPT = '雨'.repeat(790) + '🎬'.repeat(20);

/** A flat-colour picture with a red block top-left (so rotation is visible). */
async function picture(width: number, height: number, channels: 3 | 4 = 3): Promise<Sharp> {
  const { data, info } = await sharp({ create: { width, height, channels, background: { r: 40, g: 120, b: 200, alpha: channels === 4 ? 0.5 : 1 } } })
    .composite([{ input: { create: { width: Math.ceil(width / 4), height: Math.ceil(height / 4), channels: 3, background: { r: 250, g: 30, b: 30 } } }, left: 0, top: 0 }])
    .raw()
    .toBuffer({ resolveWithObject: true });
  const image = sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
  return channels === 3 ? image.removeAlpha() : image;
}


function capture(): { out: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  return { out, text: () => Buffer.concat(chunks).toString('utf8') };
}

const ep1 = (name: string) => path.join(messy, '05_generated_images', 'Episode-01', name);
const ep2 = (name: string) => path.join(messy, '05_generated_images', 'Episode-02', name);

/**
 * Every kind of mess at once. Episode 1's prompt file has a BOM and CRLF line ends and uses every marker
 * form; episode 2's is plain LF and has text before its first marker and an empty prompt.
 */
async function buildMessyRun(): Promise<string> {
  const run = path.join(tmpRoot, '第一季 final run');
  await fs.mkdir(path.join(run, '05_generated_images', 'Episode-01'), { recursive: true });
  await fs.mkdir(path.join(run, '05_generated_images', 'Episode-02'), { recursive: true });
  await fs.mkdir(path.join(run, '07_video_prompts'), { recursive: true });
  messy = run;

  // 2000×2000 random noise, stored uncompressed: over 12 MB, so its data URL is over 10 MB.
  await sharp(randomBytes(2000 * 2000 * 3), { raw: { width: 2000, height: 2000, channels: 3 } }).png({ compressionLevel: 0 }).toFile(ep1('Episode-01-Shot-001.png'));
  await (await picture(4000, 2250)).jpeg().toFile(ep1('Episode-01-Shot-002.jpg'));
  await (await picture(200, 200)).png().toFile(ep1('Episode-01-Shot-003.png'));
  await (await picture(500, 400, 4)).png().toFile(ep1('Episode-01-Shot-004.PNG'));
  await (await picture(800, 400)).jpeg().withMetadata({ orientation: 6 }).toFile(ep1('Episode-01-Shot-005.jpeg'));
  await (await picture(640, 480)).webp().toFile(ep1('Episode-01-Shot-006.webp'));
  await fs.writeFile(ep1('Episode-01-Shot-007.bmp'), bmp(400, 380));
  await fs.writeFile(ep1('Episode-01-Shot-008.png'), Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), randomBytes(5000)]));
  await (await picture(640, 480)).jpeg().toFile(ep1('Episode-01-Shot-009.png'));
  await (await picture(640, 360)).png().toFile(ep1('Episode-01-Shot-010.png'));
  await (await picture(640, 360)).png().toFile(ep1('Episode-01-Shot-012.png'));
  await (await picture(640, 360)).png().toFile(ep1('Episode-01-Shot-013.png'));
  await (await picture(640, 360)).png().toFile(ep1('Episode-01-Shot-014 copy.png'));
  await (await picture(640, 360)).png().toFile(ep1('镜头15 最终版.png'));
  const ep1Prompts = [
    '# 第一集：every marker form',
    'Shot 001: Noise fills the frame.',
    'Shot-002：镜头缓慢推进',
    'Shot003: A tiny thumbnail grows.',
    '镜头004：透明背景上的人物',
    '',
    '## Shot 005',
    'The camera turns',
    'to follow her.',
    'Shot 006: First line,',
    '  second line,',
    '',
    '# a comment inside a prompt',
    'third line.',
    'shot 7: A BMP still.',
    'Shot 008: Corrupt file.',
    'Shot ００９: A JPEG named .png.',
    'Shot 011: This prompt has no image.',
    `Shot 012: ${LONG_PROMPT}`,
    'Shot 013: first take of the marker',
    'Shot 13: the same shot again',
    '',
  ].join('\r\n');
  await fs.writeFile(path.join(run, '07_video_prompts', 'Episode-01-Video-Prompts.txt'), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(ep1Prompts)]));

  await (await picture(1280, 720)).png().toFile(ep2('Episode-02-Shot-001.png'));
  await (await picture(1280, 720)).png().toFile(ep2('Episode-02-Shot-002.png'));
  await (await picture(1280, 720)).png().toFile(ep2('Episode-02-Shot-003.png'));
  await fs.writeFile(
    path.join(run, '07_video_prompts', 'Episode-02-Video-Prompts.txt'),
    'Notes for the editor\nShot 1: Night falls.\nShot 2: The moon rises.\nShot 3:\n',
  );
  await fs.writeFile(path.join(run, '05_generated_images', 'notes.txt'), 'todo\n');

  // Episode 2 shot 2 is already generated: SUCCESS in tasks.json and its files on disk.
  const out = path.join(run, '08_generated_videos', 'Episode-02');
  await fs.mkdir(out, { recursive: true });
  await fs.writeFile(path.join(out, 'Episode-02-Shot-002.mp4'), 'video');
  await fs.writeFile(path.join(out, 'Episode-02-Shot-002-thumbnail.png'), 'thumbnail');
  await updateTaskRecord(run, 'Episode-02-002', {
    episode: 2, shot: 2, take: 1, image_path: ep2('Episode-02-Shot-002.png'), prompt: 'The moon rises.',
    status: 'SUCCESS', task_id: 'task-1', video_path: path.join(out, 'Episode-02-Shot-002.mp4'), thumbnail_path: path.join(out, 'Episode-02-Shot-002-thumbnail.png'),
  });
  return run;
}

/** Everything under the run folder (inputs and outputs) with size and mtime. */
async function treeSnapshot(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await fs.readdir(dir)).sort()) {
      const p = path.join(dir, name);
      const st = await fs.stat(p);
      out.push(`${path.relative(root, p)} ${st.isDirectory() ? 'dir' : st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return out;
}

/** key → [state, error category or changes]: the outcome of every entry at a glance. */
function outcomes(report: ValidationReport): Record<string, [string, string | string[]]> {
  return Object.fromEntries(report.episodes.flatMap((e) => e.shots.map((s) => [s.key, [s.state, s.error ? s.error.category : s.changes]])));
}

let strictReport: ValidationReport;
let lenientReport: ValidationReport;
let noiseDataUrlMb: string;

beforeAll(async () => {
  tmpRoot = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'i2v-validate-')));
  await buildMessyRun();
  noiseDataUrlMb = (dataUrlLength('image/png', (await fs.stat(ep1('Episode-01-Shot-001.png'))).size) / (1024 * 1024)).toFixed(1);
  [strictReport, lenientReport] = await Promise.all([validateRun(messy, OPTS), validateRun(messy, LENIENT)]);
});

afterAll(async () => {
  await fs.rm(tmpRoot, { recursive: true, force: true });
});

describe('validateRun on a messy run folder', () => {
  it('gives every shot and file its exact outcome', () => {
    expect(outcomes(strictReport)).toEqual({
      'Episode-01-001': ['will-prepare', [`re-encoded as JPEG to fit the 10 MB data-URL limit (as it is: ${noiseDataUrlMb} MB)`]],
      'Episode-01-002': ['will-prepare', ['resized from 4000×2250 to 2000×1125', 're-encoded as JPEG']],
      'Episode-01-003': ['input-error', 'image-too-small'],
      'Episode-01-004': ['will-prepare', ['flattened transparency onto white', 're-encoded as JPEG']],
      'Episode-01-005': ['will-prepare', ['rotated upright (EXIF orientation 6)', 're-encoded as JPEG']],
      'Episode-01-006': ['ready', []],
      'Episode-01-007': ['ready', []],
      'Episode-01-008': ['input-error', 'image-unreadable'],
      'Episode-01-009': ['ready', ['detected JPEG content in a .png file']],
      'Episode-01-010': ['orphan-image', 'orphan-image'],
      'Episode-01-011': ['orphan-prompt', 'orphan-prompt'],
      'Episode-01-012': ['input-error', 'prompt-too-long'],
      'Episode-01-013': ['input-error', 'prompt-duplicate'],
      '05_generated_images/Episode-01/Episode-01-Shot-014 copy.png': ['bad-name', 'bad-name'],
      '05_generated_images/Episode-01/镜头15 最终版.png': ['bad-name', 'bad-name'],
      'Episode-02-001': ['ready', []],
      'Episode-02-002': ['done', []],
      'Episode-02-003': ['input-error', 'prompt-empty'],
    });
    expect(strictReport.problems.map((p) => [p.path, p.category])).toEqual([
      ['05_generated_images/notes.txt', 'bad-name'],
      ['07_video_prompts/Episode-02-Video-Prompts.txt', 'prompt-stray-text'],
    ]);
    expect(strictReport.totals).toEqual({
      ready: 4, 'will-prepare': 4, 'input-error': 5, done: 1, 'orphan-prompt': 1, 'orphan-image': 1, 'bad-name': 2, problems: 2, toSubmit: 8,
    });
    expect(strictReport.exitCode).toBe(2);
  });

  it('upscales small images and truncates long prompts only when asked', () => {
    const lenient = outcomes(lenientReport);
    expect(lenient['Episode-01-003']).toEqual(['will-prepare', ['resized from 200×200 to 360×360', 're-encoded as JPEG']]);
    expect(lenient['Episode-01-012']).toEqual(['ready', ['prompt truncated from 810 to 800 characters']]);
    const truncated = lenientReport.episodes[0]!.shots.find((s) => s.key === 'Episode-01-012')!;
    expect(truncated.prompt).toBe('雨'.repeat(790) + '🎬'.repeat(10));
    expect(truncated.promptChars).toBe(810);
    expect(lenientReport.totals).toMatchObject({ ready: 5, 'will-prepare': 5, 'input-error': 3, toSubmit: 10 });
  });

  it('explains each input error in one line with a fix', () => {
    const shot = (key: string) => strictReport.episodes.flatMap((e) => e.shots).find((s) => s.key === key)!;
    expect(shot('Episode-01-003').error).toEqual({
      category: 'image-too-small',
      message: 'Image is 200×200: each side must be at least 360 px.',
      fix: 'Use a larger image, or pass --upscale-small to enlarge small images automatically.',
    });
    expect(shot('Episode-01-008').error!.message).toMatch(/^Cannot read image Episode-01-Shot-008\.png: /);
    expect(shot('Episode-01-012').error).toEqual({
      category: 'prompt-too-long',
      message: 'The prompt is 810 characters; wan2.2-i2v-flash reads 800 and silently drops the rest.',
      fix: 'Shorten it to 800 characters, or pass --truncate-prompts to cut it there.',
    });
    expect(shot('Episode-01-013')).toMatchObject({
      imagePath: '05_generated_images/Episode-01/Episode-01-Shot-013.png',
      promptLine: 21,
      error: { message: '07_video_prompts/Episode-01-Video-Prompts.txt: shot 13 has a prompt at lines 20 and 21; it is skipped until only one remains.' },
    });
    expect(shot('Episode-01-010').error!.fix).toContain('Add its prompt');
    expect(shot('Episode-01-011')).toMatchObject({ imagePath: null, promptLine: 18, promptChars: 25 });
    for (const s of strictReport.episodes.flatMap((e) => e.shots)) {
      if (s.error) expect(s.error.fix.length, s.key).toBeGreaterThan(0);
      if (s.error) expect(s.error.message, s.key).not.toContain('\n');
    }
  });

  it('reads every prompt syntax, by value, across BOM and CRLF', async () => {
    const { plan } = await preflight(messy, { ...LENIENT, strict: false });
    const prompts = Object.fromEntries(plan.episodes.flatMap((e) => e.shots.map((s) => [s.key, s.prompt])));
    expect(prompts).toMatchObject({
      'Episode-01-001': 'Noise fills the frame.',
      'Episode-01-002': '镜头缓慢推进',
      'Episode-01-003': 'A tiny thumbnail grows.',
      'Episode-01-004': '透明背景上的人物',
      'Episode-01-005': 'The camera turns\nto follow her.',
      'Episode-01-006': 'First line,\nsecond line,\nthird line.',
      'Episode-01-007': 'A BMP still.',
      'Episode-01-009': 'A JPEG named .png.',
      'Episode-02-001': 'Night falls.',
    });
    const lines = Object.fromEntries(lenientReport.episodes.flatMap((e) => e.shots.map((s) => [s.key, s.promptLine])));
    expect([lines['Episode-01-001'], lines['Episode-01-005'], lines['Episode-01-009']]).toEqual([2, 7, 17]);
  });

  it('agrees with prepareImage on every image it inspected', async () => {
    const cache = path.join(tmpRoot, 'prepare-cache');
    for (const shot of lenientReport.episodes.flatMap((e) => e.shots)) {
      if (!shot.imagePath || !['ready', 'will-prepare', 'input-error'].includes(shot.state)) continue;
      const source = path.join(messy, shot.imagePath);
      const strictShot = strictReport.episodes.flatMap((e) => e.shots).find((s) => s.key === shot.key)!;
      const result = await prepareImage(source, cache).then((p) => p, (err: { category: string }) => err);
      if (strictShot.error?.category.startsWith('image-')) {
        expect(result, shot.key).toMatchObject({ category: strictShot.error.category });
      } else if (strictShot.state === 'ready') {
        expect(result, shot.key).toMatchObject({ path: source, changes: [] });
      } else if (strictShot.state === 'will-prepare') {
        const planned = strictShot.changes.filter((c) => !c.startsWith('re-encoded as JPEG'));
        expect('changes' in result && result.changes.slice(0, planned.length), shot.key).toEqual(planned);
        expect('path' in result && result.path, shot.key).not.toBe(source);
      }
    }
  });

  it('changes nothing in the run folder: no input byte or mtime, no cache, no tasks.json write', async () => {
    const inputs = await snapshotInputs(messy);
    expect(Object.keys(inputs)).toContain('05_generated_images/Episode-01/镜头15 最终版.png');
    const tree = await treeSnapshot(messy);
    await validateRun(messy, OPTS);
    await validateCommand(messy, { ...LENIENT, json: true }, capture().out);
    await assertInputsUnchanged(messy, inputs);
    expect(await treeSnapshot(messy)).toEqual(tree);
  });

  it('lists only the episodes asked for', async () => {
    const report = await validateRun(messy, { ...OPTS, episodes: [2] });
    expect(report.episodes.map((e) => e.name)).toEqual(['Episode-02']);
    expect(report.cost).toMatchObject({ shots: 1, amount: 1 });
  });

  it('refuses a resolution the model does not offer', async () => {
    const err = await validateRun(messy, { ...OPTS, generation: { ...DEFAULT_GENERATION, model: 'wan2.2-i2v-plus', resolution: '720P' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).fix).toBe('Use --resolution 480P or 1080P.');
  });

  it('lists images whose prompt file is not UTF-8 instead of dropping them', async () => {
    const run = path.join(tmpRoot, 'gbk');
    await fs.mkdir(path.join(run, '05_generated_images', 'Episode-01'), { recursive: true });
    await fs.mkdir(path.join(run, '07_video_prompts'));
    await (await picture(640, 360)).png().toFile(path.join(run, '05_generated_images', 'Episode-01', 'Episode-01-Shot-001.png'));
    await fs.writeFile(path.join(run, '07_video_prompts', 'Episode-01-Video-Prompts.txt'), Buffer.from([0xbe, 0xb5, 0xcd, 0xb7, 0x30, 0x30, 0x31, 0xa3, 0xba]));
    const report = await validateRun(run, OPTS);
    expect(outcomes(report)).toEqual({ 'Episode-01-001': ['input-error', 'prompt-encoding'] });
    expect(report.problems.map((p) => p.category)).toEqual(['prompt-encoding']);
    expect(report.exitCode).toBe(2);
  });
});

describe('validateCommand', () => {
  it('prints a readable table with totals, cost and time, and returns 2', async () => {
    const { out, text } = capture();
    expect(await validateCommand(messy, { ...OPTS, json: false }, out)).toBe(2);
    const lines = text().split('\n');
    const row = (label: string) => {
      const line = lines.find((l) => l.startsWith(`  ${label}  `));
      expect(line, label).toBeDefined();
      return line!.trim().split(/ {2,}/).slice(1);
    };
    expect(lines[0]).toBe(`Run folder: ${messy}`);
    expect(lines).toContain('Episode-01');
    expect(row('Episode-01-002')).toEqual(['will-prepare', 'Episode-01-Shot-002.jpg: resized from 4000×2250 to 2000×1125; re-encoded as JPEG']);
    expect(row('Episode-01-003')).toEqual(['input-error', '[image-too-small] Image is 200×200: each side must be at least 360 px. → Use a larger image, or pass --upscale-small to enlarge small images automatically.']);
    expect(row('Episode-01-006')).toEqual(['ready', 'Episode-01-Shot-006.webp']);
    expect(row('Episode-01-007')).toEqual(['ready', 'Episode-01-Shot-007.bmp']);
    expect(row('Episode-01-008')).toEqual(['input-error', '[image-unreadable] Cannot read image Episode-01-Shot-008.png: Input buffer has corrupt header. → Re-export the image as JPEG or PNG.']);
    expect(row('Episode-01-009')).toEqual(['ready', 'Episode-01-Shot-009.png: detected JPEG content in a .png file']);
    expect(row('Episode-02-002')).toEqual(['done', 'Episode-02-Shot-002.png: video on disk']);
    expect(row('Episode-01-Shot-014 copy.png')[0]).toBe('bad-name');
    expect(row('镜头15 最终版.png')[0]).toBe('bad-name');
    // The state column lines up, counting CJK characters as two columns.
    const stateColumn = new Set(lines.filter((l) => / (ready|will-prepare|input-error|done|orphan-\w+|bad-name) /.test(l) && l.startsWith('  '))
      .map((l) => l.replace(/[\u4e00-\u9fff]/g, 'xx').search(/ (ready|will-prepare|input-error|done|orphan-\w+|bad-name) /)));
    expect(stateColumn.size).toBe(1);
    expect(lines).toContain('  [prompt-stray-text] 07_video_prompts/Episode-02-Video-Prompts.txt line 1: text before the first shot marker belongs to no shot: "Notes for the editor". → Start each prompt with a marker such as "Shot 001:", or make the line a comment by starting it with #.');
    expect(lines).toContain('Totals: 4 ready, 4 to be prepared, 5 input errors, 1 done, 1 prompt without an image, 1 image without a prompt, 2 misnamed files, 2 other problems');
    expect(lines).toContain('Estimated cost: ¥8.00 (8 shots × 5 s × ¥0.20/s, wan2.2-i2v-flash 720P)');
    expect(lines).toContain('Estimated time: about 7.5 min, assuming 2.5 min per shot (the usual range is 1–5 min), at most 3 shot(s) of an episode at once and episodes in parallel; provider queues and rate limits can add to it');
    expect(lines).toContain('11 problem(s) found: `i2v run` skips those shots (`--strict` refuses to start). Fix them and validate again.');
  });

  it('prints stable JSON in the documented shape, without absolute paths', async () => {
    const a = capture();
    const b = capture();
    expect(await validateCommand(messy, { ...OPTS, json: true }, a.out)).toBe(2);
    await validateCommand(messy, { ...OPTS, json: true }, b.out);
    expect(a.text()).toBe(b.text());
    expect(a.text()).not.toContain(tmpRoot);
    expect(a.text()).not.toContain(LONG_PROMPT.slice(0, 50));

    const json = JSON.parse(a.text()) as Record<string, unknown> & { episodes: Array<{ shots: Array<Record<string, unknown>> }> };
    expect(Object.keys(json)).toEqual(['version', 'generation', 'maxInFlight', 'truncatePrompts', 'upscaleSmall', 'episodes', 'problems', 'totals', 'cost', 'time', 'exitCode']);
    expect(json.generation).toEqual({ model: 'wan2.2-i2v-flash', resolution: '720P', duration: 5, promptMaxChars: 800 });
    expect(json.cost).toEqual({ amount: 8, currency: 'CNY', perSecond: 0.2, secondsPerShot: 5, shots: 8 });
    expect(json.time).toMatchObject({ seconds: 450 });
    expect(json.exitCode).toBe(2);
    const shots = json.episodes.flatMap((e) => e.shots);
    for (const shot of shots) {
      expect(Object.keys(shot)).toEqual(['key', 'episode', 'shot', 'name', 'state', 'imagePath', 'promptLine', 'promptChars', 'changes', 'error']);
    }
    expect(shots.find((s) => s.key === 'Episode-01-004')).toEqual({
      key: 'Episode-01-004', episode: 1, shot: 4, name: 'Episode-01-Shot-004', state: 'will-prepare',
      imagePath: '05_generated_images/Episode-01/Episode-01-Shot-004.PNG', promptLine: 5, promptChars: 8,
      changes: ['flattened transparency onto white', 're-encoded as JPEG'], error: null,
    });
    expect(shots.map((s) => s.key)).toEqual(strictReport.episodes.flatMap((e) => e.shots.map((s) => s.key)));
    expect((json.problems as Array<Record<string, unknown>>).map((p) => Object.keys(p))).toEqual([
      ['path', 'category', 'message', 'fix'],
      ['path', 'category', 'message', 'fix'],
    ]);
  });

  it('prices the demo run by hand: 6 × 5 s × ¥0.20 = ¥6.00, and exits 0', async () => {
    const demo = path.join(tmpRoot, 'demo-run');
    for (const dir of ['05_generated_images', '07_video_prompts']) {
      await fs.cp(path.join(PROJECT_ROOT, 'examples', 'demo-run', dir), path.join(demo, dir), { recursive: true });
    }
    const perSecond = (JSON.parse(await fs.readFile(path.join(PROJECT_ROOT, 'config', 'prices.json'), 'utf8')) as { perSecond: Record<string, Record<string, number>> })
      .perSecond['wan2.2-i2v-flash']!['720P']!;
    expect(perSecond).toBe(0.2);

    const { out, text } = capture();
    expect(await validateCommand(demo, { ...OPTS, json: false }, out)).toBe(0);
    expect(text()).toContain(`Estimated cost: ¥6.00 (6 shots × 5 s × ¥0.20/s, wan2.2-i2v-flash 720P)\n`);
    expect(text()).toContain('All 6 shot(s) to generate are ready.');
    const report = await validateRun(demo, OPTS);
    expect(report.cost).toEqual({ amount: 6, currency: 'CNY', perSecond: 0.2, secondsPerShot: 5, shots: 6 });
    expect(report.cost.amount).toBe(6 * 5 * perSecond);
    // 3 shots per episode, 3 in flight, episodes side by side: one wave.
    expect(report.time.seconds).toBe(150);
  });
});

describe('preflight and recordInputErrors (for i2v run)', () => {
  it('leaves shots with input errors out of the plan and keeps done ones for the summary', async () => {
    const { out, text } = capture();
    const result = await preflight(messy, { ...OPTS, strict: false, out });
    expect([...result.runnable].sort()).toEqual([
      'Episode-01-001', 'Episode-01-002', 'Episode-01-004', 'Episode-01-005', 'Episode-01-006', 'Episode-01-007', 'Episode-01-009',
      'Episode-02-001', 'Episode-02-002',
    ]);
    expect(result.plan.episodes.flatMap((e) => e.shots.map((s) => s.key)).sort()).toEqual([...result.runnable].sort());
    expect(result.errors.map((e) => [e.key, e.category])).toEqual([
      ['Episode-01-003', 'image-too-small'],
      ['Episode-01-008', 'image-unreadable'],
      ['Episode-01-012', 'prompt-too-long'],
      ['Episode-01-013', 'prompt-duplicate'],
      ['Episode-02-003', 'prompt-empty'],
    ]);
    expect(text()).toContain('! Episode-01-003: [image-too-small] Image is 200×200');
    expect(text()).toContain('Inputs: 8 shot(s) to generate (4 image(s) to prepare first), 1 already done, 5 skipped for input errors.\nEstimated cost: ¥8.00');
  });

  it('reads only headers before a run (preparation decodes in full), and everything with --strict', async () => {
    const runDir = await makeRunFolder([{ episode: 1, shot: 1, prompt: '完整' }, { episode: 1, shot: 2, prompt: '后半截丢了' }]);
    const cut = path.join(runDir, '05_generated_images', 'Episode-01', 'Episode-01-Shot-002.png');
    const whole = await fs.readFile(cut);
    await fs.writeFile(cut, whole.subarray(0, Math.floor(whole.length / 2)));
    const quick = await preflight(runDir, { ...OPTS, strict: false });
    expect([...quick.runnable].sort()).toEqual(['Episode-01-001', 'Episode-01-002']);
    await expect(prepareImage(cut, path.join(runDir, 'cache'))).rejects.toMatchObject({ category: 'image-unreadable' });
    await expect(preflight(runDir, { ...OPTS, strict: true })).rejects.toThrow(/Not starting \(--strict\)[\s\S]*Episode-01-002: \[image-unreadable\]/);
  });

  it('submits the truncated prompt with --truncate-prompts', async () => {
    const { plan } = await preflight(messy, { ...LENIENT, strict: false });
    const shot = plan.episodes[0]!.shots.find((s) => s.key === 'Episode-01-012')!;
    expect(Array.from(shot.prompt)).toHaveLength(800);
  });

  it('refuses to start with --strict, listing every problem, with exit code 2', async () => {
    const err = await preflight(messy, { ...OPTS, strict: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExitError);
    expect((err as ExitError).exitCode).toBe(2);
    const lines = (err as ExitError).message.split('\n');
    expect(lines[0]).toBe('Not starting (--strict): 11 problem(s) in the inputs. Fix them, or run without --strict to skip those shots.');
    expect(lines).toHaveLength(12);
    expect(lines).toContain('! Episode-01-012: [prompt-too-long] The prompt is 810 characters; wan2.2-i2v-flash reads 800 and silently drops the rest. → Shorten it to 800 characters, or pass --truncate-prompts to cut it there.');
    expect(lines).toContain('! 05_generated_images/Episode-01/镜头15 最终版.png: [bad-name] 05_generated_images/Episode-01/镜头15 最终版.png: not an image name the pipeline understands. → Rename it like Episode-01-Shot-001.png.');
  });

  it('records input errors in tasks.json once, and leaves a take that reached the provider alone', async () => {
    const run = path.join(tmpRoot, 'record');
    await fs.cp(messy, run, { recursive: true });
    await updateTaskRecord(run, 'Episode-01-008', { episode: 1, shot: 8, take: 2, image_path: '', prompt: 'Corrupt file.', status: 'FAILED', task_id: 'paid-task', error_code: 'InternalError' });
    const { report } = await inspectRun(run, OPTS);

    expect(await recordInputErrors(run, report)).toEqual(['Episode-01-003', 'Episode-01-012', 'Episode-01-013', 'Episode-02-003']);
    const record = await readTaskRecord(run);
    expect(record['Episode-01-003']).toMatchObject({
      status: 'FAILED', task_id: null, take: 1, image_path: '05_generated_images/Episode-01/Episode-01-Shot-003.png',
      error_code: 'InputError:image-too-small',
      error_message: 'Image is 200×200: each side must be at least 360 px. Use a larger image, or pass --upscale-small to enlarge small images automatically.',
      model: 'wan2.2-i2v-flash', resolution: '720P',
    });
    expect(record['Episode-01-008']).toMatchObject({ status: 'FAILED', task_id: 'paid-task', take: 2, error_code: 'InternalError' });
    expect(record['Episode-02-002']!.status).toBe('SUCCESS');
    expect(await recordInputErrors(run, report)).toEqual([]);
  });
});

describe('pricing', () => {
  it('reads prices and model limits', () => {
    expect(priceOf('wan2.2-i2v-flash', '720P')).toEqual({ perSecond: 0.2, currency: 'CNY' });
    expect(priceOf('wan2.2-i2v-plus', '720P')).toBeUndefined();
    expect(estimateShotCost({ ...DEFAULT_GENERATION, resolution: '1080P' })).toEqual({ amount: 2.4, currency: 'CNY', seconds: 5 });
    expect(estimateShotCost({ ...DEFAULT_GENERATION, model: 'wan2.5-i2v-preview', duration: 10 })).toEqual({ amount: 6, currency: 'CNY', seconds: 10 });
    expect(estimateShotCost({ ...DEFAULT_GENERATION, model: 'some-future-model' })).toBeUndefined();
    expect(modelLimits('wan2.6-i2v')).toMatchObject({ promptMaxChars: 1500, defaultDuration: 5 });
    expect(modelLimits('some-future-model')).toEqual({ promptMaxChars: 800, defaultDuration: 5, resolutions: ['480P', '720P', '1080P'] });
    expect(formatMoney(6, 'CNY')).toBe('¥6.00');
    expect(formatMoney(0.18, 'GBP')).toBe('0.18 GBP');
    expect(readPriceTable(PRICES_FILE).currency).toBe('CNY');
  });

  it('says when the price table is malformed', async () => {
    const file = path.join(tmpRoot, 'bad-prices.json');
    await fs.writeFile(file, JSON.stringify({ currency: 'CNY', perSecond: { 'wan2.2-i2v-flash': { '720P': '0.2' } } }));
    expect(() => readPriceTable(file)).toThrow(ConfigError);
  });

  it('shows an unknown price as unknown rather than zero', async () => {
    const { out, text } = capture();
    await validateCommand(messy, { ...OPTS, generation: { ...DEFAULT_GENERATION, model: 'some-future-model' }, json: false }, out);
    expect(text()).toContain(`Estimated cost: unknown (no price for some-future-model 720P in ${PRICES_FILE})`);
  });
});
