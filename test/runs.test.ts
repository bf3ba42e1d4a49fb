import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../src/errors';
import { produceFileAtomic, readJsonIfExists, replaceFile, writeFileAtomic } from '../src/atomic';
import { sweepLeftovers } from '../src/runs/sweep';
import { awaitSubmitSlot, SLOT_HOLD_MS } from '../src/runs/pacer';
import {
  clearSubmissionStarted,
  journalPath,
  markSubmissionStarted,
  SubmissionExistsError,
  readSubmission,
  recordSubmission,
  SubmissionConflictError,
} from '../src/runs/journal';
import { acquireDirLock, withFileLock } from '../src/runs/lock';
import {
  episodeName,
  internalDir,
  journalDir,
  outputPaths,
  parseImageName,
  preparedCacheDir,
  relativeToRun,
  shotName,
  taskKey,
  tasksJsonPath,
} from '../src/runs/paths';
import { parsePromptFile, PromptError } from '../src/runs/prompts';
import { runIdFor, scanRun, type ScanProblem } from '../src/runs/scan';
import { formatLocalTime, readTaskRecord, serialiseTaskRecord, updateTaskRecord, type TaskRecord, type TaskRecordEntry, type TaskRecordPatch } from '../src/runs/taskRecord';

let tmpRoot: string;
beforeAll(async () => {
  tmpRoot = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'i2v-runs-')));
});
afterAll(async () => {
  await fs.rm(tmpRoot, { recursive: true, force: true });
});

let dirCounter = 0;
async function freshDir(name = `case-${++dirCounter}`): Promise<string> {
  const dir = path.join(tmpRoot, `${++dirCounter}`, name);
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

async function writeFiles(root: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    await fs.mkdir(path.dirname(p), { recursive: true });
    await fs.writeFile(p, content);
  }
}

/** Every path under `root` with its size and mtime, for "nothing changed" checks. */
async function snapshot(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, entry.name);
      const st = await fs.lstat(p);
      out.push(`${path.relative(root, p)} ${st.isDirectory() ? 'dir' : st.size} ${st.mtimeMs}`);
      if (entry.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return out;
}

function promptsOf(text: string): Record<number, string> {
  const { prompts, errors } = parsePromptFile(text, 'p.txt');
  expect(errors).toEqual([]);
  return Object.fromEntries([...prompts].map(([shot, p]) => [shot, p.text]));
}

describe('paths: the naming scheme', () => {
  it('pads episodes to 2 and shots to 3 digits, keeping wider numbers', () => {
    expect(episodeName(1)).toBe('Episode-01');
    expect(episodeName(123)).toBe('Episode-123');
    expect(shotName(1, 1)).toBe('Episode-01-Shot-001');
    expect(shotName(2, 1234)).toBe('Episode-02-Shot-1234');
    expect(taskKey(1, 1)).toBe('Episode-01-001');
    expect(taskKey(12, 45)).toBe('Episode-12-045');
    expect(() => episodeName(1.5)).toThrow(RangeError);
  });

  it('places outputs, tasks.json and internal state under 08_generated_videos', () => {
    const run = '/runs/demo';
    expect(outputPaths(run, 1, 1)).toEqual({
      episodeDir: '/runs/demo/08_generated_videos/Episode-01',
      videoPath: '/runs/demo/08_generated_videos/Episode-01/Episode-01-Shot-001.mp4',
      thumbnailPath: '/runs/demo/08_generated_videos/Episode-01/Episode-01-Shot-001-thumbnail.png',
      smallThumbnailPath: '/runs/demo/08_generated_videos/Episode-01/Episode-01-Shot-001-thumbnail-small.png',
    });
    expect(tasksJsonPath(run)).toBe('/runs/demo/08_generated_videos/tasks.json');
    expect(internalDir(run)).toBe('/runs/demo/08_generated_videos/.i2v');
    expect(preparedCacheDir(run).startsWith(`${internalDir(run)}/`)).toBe(true);
    expect(journalDir(run).startsWith(`${internalDir(run)}/`)).toBe(true);
    expect(preparedCacheDir(run)).not.toBe(journalDir(run));
  });

  it('stores run-relative POSIX paths, and absolute ones for files outside the run', () => {
    expect(relativeToRun('/runs/demo', '/runs/demo/05_generated_images/Episode-01/Episode-01-Shot-001.png')).toBe(
      '05_generated_images/Episode-01/Episode-01-Shot-001.png',
    );
    expect(relativeToRun('/runs/demo', '/elsewhere/x.png')).toBe('/elsewhere/x.png');
    expect(relativeToRun('/runs/demo', '/runs/demo2/x.png')).toBe('/runs/demo2/x.png');
  });

  it('reads image names by value with any extension case', () => {
    expect(parseImageName('Episode-01-Shot-001.PNG')).toEqual({ episode: 1, shot: 1, extension: 'png' });
    expect(parseImageName('Episode-1-Shot-12.JpEg')).toEqual({ episode: 1, shot: 12, extension: 'jpeg' });
    expect(parseImageName('Episode-01-Shot-001.tif')).toBeUndefined();
    expect(parseImageName('episode-01-shot-001.png')).toBeUndefined();
    expect(parseImageName('Episode-01-Shot-001.png.bak')).toBeUndefined();
  });
});

describe('prompts: parsePromptFile', () => {
  it('accepts every marker form', () => {
    const text = [
      'Shot 001: plain',
      'Shot-002：full-width colon',
      'Shot003: no space',
      'shot 4: lower case, no padding',
      '镜头005：Chinese marker',
      '镜头 6: Chinese marker with space',
      '## Shot 007',
      'heading prompt',
      '### Shot 008:',
      'heading with colon',
      '# Shot 9: heading with inline text',
      '镜头００10：full-width digits',
      'Shot 11',
      'bare marker line',
    ].join('\n');
    expect(promptsOf(text)).toEqual({
      1: 'plain',
      2: 'full-width colon',
      3: 'no space',
      4: 'lower case, no padding',
      5: 'Chinese marker',
      6: 'Chinese marker with space',
      7: 'heading prompt',
      8: 'heading with colon',
      9: 'heading with inline text',
      10: 'full-width digits',
      11: 'bare marker line',
    });
  });

  it('continues a prompt over lines until the next marker, dropping blanks and # comments', () => {
    const text = [
      '# Episode 1 prompts',
      '',
      'Shot 1: 【基础画面】叶凡睁开眼睛',
      '   【相机运动】镜头推进   ',
      '',
      '# reviewer: make it slower',
      '// not a comment',
      'Shot 2 - this is not a marker, so it continues shot 1',
      '# Shot 3 is a heading with words, so it is a comment',
      'Shot 2:',
      '',
      '  second prompt  ',
    ].join('\n');
    const { prompts, errors } = parsePromptFile(text, 'p.txt');
    expect(errors).toEqual([]);
    expect(prompts.get(1)).toEqual({
      text: '【基础画面】叶凡睁开眼睛\n【相机运动】镜头推进\n// not a comment\nShot 2 - this is not a marker, so it continues shot 1',
      line: 3,
    });
    expect(prompts.get(2)).toEqual({ text: 'second prompt', line: 10 });
    expect([...prompts.keys()]).toEqual([1, 2]);
  });

  it('handles a UTF-8 BOM and CRLF line ends', () => {
    const { prompts, errors } = parsePromptFile('\uFEFFShot 001: first\r\nmore\r\n\r\nShot 002：second\r\n', 'p.txt');
    expect(errors).toEqual([]);
    expect(prompts.get(1)).toEqual({ text: 'first\nmore', line: 1 });
    expect(prompts.get(2)).toEqual({ text: 'second', line: 4 });
  });

  it('matches shot numbers by value and orders prompts by shot', () => {
    expect(Object.keys(promptsOf('Shot 0012: twelve\nShot 3: three\nShot 001: one'))).toEqual(['1', '3', '12']);
  });

  it('reports a duplicate shot with both line numbers and drops it', () => {
    const { prompts, errors } = parsePromptFile('Shot 1: a\nShot 2: b\n\nShot 001: again', 'Episode-01-Video-Prompts.txt');
    expect([...prompts.keys()]).toEqual([2]);
    expect(errors).toHaveLength(1);
    const err = errors[0]!;
    expect(err).toBeInstanceOf(InputError);
    expect(err).toBeInstanceOf(PromptError);
    expect(err.category).toBe('prompt-duplicate');
    expect(err.shot).toBe(1);
    expect(err.line).toBe(4);
    expect(err.message).toContain('Episode-01-Video-Prompts.txt');
    expect(err.message).toContain('lines 1 and 4');
    expect(err.fix).toBeTruthy();
  });

  it('reports an empty prompt, mid-file and at the end', () => {
    const { prompts, errors } = parsePromptFile('Shot 1:\n# only a comment\n\nShot 2: ok\nShot 3：  ', 'p.txt');
    expect([...prompts.keys()]).toEqual([2]);
    expect(errors.map((e) => [e.category, e.shot, e.line])).toEqual([
      ['prompt-empty', 1, 1],
      ['prompt-empty', 3, 5],
    ]);
    expect(errors[0]!.message).toContain('p.txt line 1');
  });

  it('reports text before the first marker instead of dropping it silently', () => {
    const { prompts, errors } = parsePromptFile('# title is fine\nOops a prompt without marker\nstill stray\nShot 1: ok', 'p.txt');
    expect([...prompts.keys()]).toEqual([1]);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.category).toBe('prompt-stray-text');
    expect(errors[0]!.line).toBe(2);
    expect(errors[0]!.shot).toBeUndefined();
    expect(errors[0]!.message).toContain('line 2');
    expect(errors[0]!.message).toContain('Oops a prompt without marker');
  });

  it('returns nothing for an empty or comment-only file', () => {
    expect(parsePromptFile('', 'p.txt')).toEqual({ prompts: new Map(), errors: [] });
    expect(parsePromptFile('# nothing yet\n\n', 'p.txt')).toEqual({ prompts: new Map(), errors: [] });
  });
});

describe('scan: scanRun', () => {
  const png = Buffer.from('not really a png');

  async function realisticRun(): Promise<string> {
    const run = await freshDir('Season 1 第一季');
    await writeFiles(run, {
      '05_generated_images/Episode-01/Episode-01-Shot-001.png': png,
      '05_generated_images/Episode-01/Episode-01-Shot-002.JPG': png,
      '05_generated_images/Episode-01/Episode-01-Shot-003.jpeg': png,
      '05_generated_images/Episode-01/Episode-01-Shot-004.png': png,
      '05_generated_images/Episode-01/Episode-01-Shot-004.jpg': png,
      '05_generated_images/Episode-01/Episode-01-Shot-010.Webp': png,
      '05_generated_images/Episode-01/shot 6 final.png': png,
      '05_generated_images/Episode-01/镜头7.png': png,
      '05_generated_images/Episode-01/Episode-02-Shot-005.png': png,
      '05_generated_images/Episode-01/Episode-01-Shot-008.tif': png,
      '05_generated_images/Episode-01/.DS_Store': png,
      '05_generated_images/Episode-01/Thumbs.db': png,
      '05_generated_images/Episode-01/old/Episode-01-Shot-001.png': png,
      '05_generated_images/Episode-02/Episode-02-Shot-001.bmp': png,
      '05_generated_images/Episode-02/Episode-02-Shot-002.PNG': png,
      '05_generated_images/Episode-03/Episode-03-Shot-001.png': png,
      '05_generated_images/notes.txt': 'x',
      '07_video_prompts/Episode-01-Video-Prompts.txt': 'Shot 1: one\nShot 2: two\nShot 004: four\nShot 10: ten\nShot 9: nine has no image\n',
      '07_video_prompts/Episode-02-Video-Prompts.txt': '\uFEFFShot 1: ep2 one\r\nShot 2: ep2 two\r\nShot 02: again\r\n',
      '07_video_prompts/README.md': 'notes',
    });
    return run;
  }

  const brief = (problems: ScanProblem[], run: string): unknown[] =>
    problems.map((p) => ({ kind: p.kind, path: p.path && path.relative(run, p.path), shot: p.shot }));

  it('plans a realistic run folder exactly', async () => {
    const run = await realisticRun();
    const plan = await scanRun(run);
    const img = (rel: string): string => path.join(run, '05_generated_images', rel);

    expect(plan.runDir).toBe(run);
    expect(plan.runId).toBe(runIdFor(run));
    expect(plan.episodes.map((e) => e.name)).toEqual(['Episode-01', 'Episode-02', 'Episode-03']);

    const [ep1, ep2, ep3] = plan.episodes;
    expect(ep1!.shots).toEqual([
      { episode: 1, shot: 1, key: 'Episode-01-001', name: 'Episode-01-Shot-001', imagePath: img('Episode-01/Episode-01-Shot-001.png'), prompt: 'one' },
      { episode: 1, shot: 2, key: 'Episode-01-002', name: 'Episode-01-Shot-002', imagePath: img('Episode-01/Episode-01-Shot-002.JPG'), prompt: 'two' },
      { episode: 1, shot: 10, key: 'Episode-01-010', name: 'Episode-01-Shot-010', imagePath: img('Episode-01/Episode-01-Shot-010.Webp'), prompt: 'ten' },
    ]);
    expect(brief(ep1!.problems, run)).toEqual([
      { kind: 'bad-name', path: '05_generated_images/Episode-01/Episode-01-Shot-008.tif', shot: undefined },
      { kind: 'bad-name', path: '05_generated_images/Episode-01/Episode-02-Shot-005.png', shot: undefined },
      { kind: 'bad-name', path: '05_generated_images/Episode-01/old', shot: undefined },
      { kind: 'bad-name', path: '05_generated_images/Episode-01/shot 6 final.png', shot: undefined },
      { kind: 'bad-name', path: '05_generated_images/Episode-01/镜头7.png', shot: undefined },
      { kind: 'orphan-image', path: '05_generated_images/Episode-01/Episode-01-Shot-003.jpeg', shot: 3 },
      { kind: 'duplicate-image', path: '05_generated_images/Episode-01/Episode-01-Shot-004.jpg', shot: 4 },
      { kind: 'orphan-prompt', path: '07_video_prompts/Episode-01-Video-Prompts.txt', shot: 9 },
    ]);
    const messages = ep1!.problems.map((p) => p.message);
    expect(messages[0]).toContain('.tif images are not supported');
    expect(messages[1]).toContain('belongs to Episode-02');
    expect(messages[3]).toContain('05_generated_images/Episode-01/shot 6 final.png');
    expect(messages[4]).toContain('镜头7.png');
    expect(messages[5]).toContain('no "Shot 003:" prompt in 07_video_prompts/Episode-01-Video-Prompts.txt');
    expect(messages[6]).toContain('Episode-01-Shot-004.jpg, Episode-01-Shot-004.png');

    expect(ep2!.shots).toEqual([
      { episode: 2, shot: 1, key: 'Episode-02-001', name: 'Episode-02-Shot-001', imagePath: img('Episode-02/Episode-02-Shot-001.bmp'), prompt: 'ep2 one' },
    ]);
    expect(brief(ep2!.problems, run)).toEqual([{ kind: 'prompt-error', path: '07_video_prompts/Episode-02-Video-Prompts.txt', shot: 2 }]);
    expect(ep2!.problems[0]!.message).toContain('lines 2 and 3');

    expect(ep3!.shots).toEqual([]);
    expect(brief(ep3!.problems, run)).toEqual([{ kind: 'orphan-image', path: '05_generated_images/Episode-03/Episode-03-Shot-001.png', shot: 1 }]);
    expect(ep3!.problems[0]!.message).toContain('no prompt file 07_video_prompts/Episode-03-Video-Prompts.txt');

    expect(brief(plan.problems, run)).toEqual([
      { kind: 'bad-name', path: '05_generated_images/notes.txt', shot: undefined },
      { kind: 'bad-name', path: '07_video_prompts/README.md', shot: undefined },
    ]);
  });

  it('writes nothing into the run folder', async () => {
    const run = await realisticRun();
    const before = await snapshot(run);
    await scanRun(run);
    await scanRun(run, { episodes: [2] });
    expect(await snapshot(run)).toEqual(before);
  });

  it('filters episodes, and rejects one that does not exist', async () => {
    const run = await realisticRun();
    const plan = await scanRun(run, { episodes: [2] });
    expect(plan.episodes.map((e) => e.episode)).toEqual([2]);
    const err = await scanRun(run, { episodes: [7] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).category).toBe('episode-missing');
    expect((err as InputError).fix).toContain('Episode-01, Episode-02, Episode-03');
  });

  it('numbers folders and images by value and plans a prompt-only episode as orphan prompts', async () => {
    const run = await freshDir();
    await writeFiles(run, {
      '05_generated_images/Episode-1/Episode-1-Shot-2.png': png,
      '07_video_prompts/Episode-01-Video-Prompts.txt': 'Shot 002: two',
      '07_video_prompts/Episode-04-Video-Prompts.txt': 'Shot 1: lonely',
      '07_video_prompts/Episode-5-Video-Prompts.txt': 'Shot 1: misnamed',
    });
    const plan = await scanRun(run);
    expect(plan.episodes.map((e) => [e.name, e.shots.map((s) => s.name)])).toEqual([
      ['Episode-01', ['Episode-01-Shot-002']],
      ['Episode-04', []],
    ]);
    expect(plan.episodes[1]!.problems.map((p) => p.kind)).toEqual(['orphan-prompt']);
    expect(plan.problems).toHaveLength(1);
    expect(plan.problems[0]!.message).toContain('expected a file named like Episode-05-Video-Prompts.txt');
  });

  it('reports a prompt file that is not UTF-8 once, not per image', async () => {
    const run = await freshDir();
    await writeFiles(run, {
      '05_generated_images/Episode-01/Episode-01-Shot-001.png': png,
      '05_generated_images/Episode-01/Episode-01-Shot-002.png': png,
      '07_video_prompts/Episode-01-Video-Prompts.txt': Buffer.from([0xbe, 0xb5, 0xcd, 0xb7, 0x30, 0x30, 0x31, 0xa3, 0xba]), // GBK "镜头001："
    });
    const [ep] = (await scanRun(run)).episodes;
    expect(ep!.shots).toEqual([]);
    expect(ep!.problems.map((p) => p.kind)).toEqual(['prompt-error']);
    expect(ep!.problems[0]!.message).toContain('not UTF-8');
  });

  it('rejects a folder without 05_generated_images, and a missing folder, with a fix', async () => {
    const run = await freshDir();
    await writeFiles(run, { '07_video_prompts/Episode-01-Video-Prompts.txt': 'Shot 1: x' });
    for (const dir of [run, path.join(run, 'nope')]) {
      const err = await scanRun(dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).category).toBe('run-folder');
      expect((err as InputError).fix).toContain('05_generated_images');
    }
  });

  it('derives a deterministic, workflow-id-safe runId from the real path', async () => {
    const a = await freshDir('第一季 run#1 (final)');
    const b = await freshDir('第一季 run#1 (final)');
    for (const run of [a, b]) await writeFiles(run, { '05_generated_images/Episode-01/Episode-01-Shot-001.png': png });
    const link = path.join(tmpRoot, 'link-to-a');
    await fs.symlink(a, link);

    const [planA, planA2, planB, planLink] = await Promise.all([scanRun(a), scanRun(a), scanRun(b), scanRun(link)]);
    expect(planA.runId).toMatch(/^run-1-final-[0-9a-f]{8}$/);
    expect(planA2.runId).toBe(planA.runId);
    expect(planB.runId).not.toBe(planA.runId);
    expect(planLink.runId).toBe(planA.runId);
    expect(planLink.runDir).toBe(a);
    expect(runIdFor('/x/第一季')).toMatch(/^run-[0-9a-f]{8}$/);
    expect(runIdFor('/x/demo')).toMatch(/^demo-[0-9a-f]{8}$/);
    expect(runIdFor(`/x/${'a'.repeat(100)}`)).toMatch(/^a{40}-[0-9a-f]{8}$/);
  });
});

describe('atomic writes', () => {
  it('creates parents, replaces content and leaves no temp files', async () => {
    const dir = await freshDir();
    const file = path.join(dir, 'a', 'b', 'data.json');
    await writeFileAtomic(file, 'first');
    await writeFileAtomic(file, Buffer.from('second'));
    expect(await fs.readFile(file, 'utf8')).toBe('second');
    expect(await fs.readdir(path.dirname(file))).toEqual(['data.json']);
  });

  it.each([
    ['writeFileAtomic', writeFileAtomic],
    ['replaceFile (no fsync)', replaceFile],
  ])('%s: concurrent writers of one file leave one whole version and no temp files', async (_name, write) => {
    const dir = await freshDir();
    const file = path.join(dir, 'data.txt');
    const versions = Array.from({ length: 20 }, (_, i) => `${i}:`.padEnd(100_000, String(i % 10)));
    await Promise.all(versions.map((v) => write(file, v)));
    expect(versions).toContain(await fs.readFile(file, 'utf8'));
    expect(await fs.readdir(dir)).toEqual(['data.txt']);
  });

  it('a file written by another program replaces the old one only once whole; a failed write leaves the old one and no temp file', async () => {
    const dir = await freshDir();
    const file = path.join(dir, 'thumb.png');
    await writeFileAtomic(file, 'old');
    await expect(produceFileAtomic(file, async (tmp) => {
      await fs.writeFile(tmp, 'half');
      throw new Error('the writer died');
    })).rejects.toThrow('the writer died');
    expect(await fs.readFile(file, 'utf8')).toBe('old');
    expect(await fs.readdir(dir)).toEqual(['thumb.png']);

    const result = await produceFileAtomic(file, async (tmp) => {
      await fs.writeFile(tmp, 'new');
      expect(await fs.readFile(file, 'utf8')).toBe('old');
      return 42;
    });
    expect([result, await fs.readFile(file, 'utf8')]).toEqual([42, 'new']);
    expect(await fs.readdir(dir)).toEqual(['thumb.png']);
  });

  it('replaceFile: a failed write leaves what was there and no temp file', async () => {
    const dir = await freshDir();
    const file = path.join(dir, 'pacer.json');
    await replaceFile(file, '[1]');
    await expect(replaceFile(path.join(dir, 'missing', 'x.json'), 'x')).rejects.toThrow(/ENOENT/);
    expect(await fs.readdir(dir)).toEqual(['pacer.json']);
    expect(await fs.readFile(file, 'utf8')).toBe('[1]');
  });

  it('readJsonIfExists: undefined when missing, InputError naming a corrupt file', async () => {
    const dir = await freshDir();
    expect(await readJsonIfExists(path.join(dir, 'missing.json'))).toBeUndefined();
    await fs.writeFile(path.join(dir, 'ok.json'), '\uFEFF{"a":1}');
    expect(await readJsonIfExists(path.join(dir, 'ok.json'))).toEqual({ a: 1 });
    await fs.writeFile(path.join(dir, 'bad.json'), '{"a":');
    await expect(readJsonIfExists(path.join(dir, 'bad.json'))).rejects.toThrow(/bad\.json is not valid JSON/);
  });
});

describe('locks', () => {
  it('serialises callers in one process', async () => {
    const dir = await freshDir();
    const target = path.join(dir, 'thing.json');
    let inside = 0;
    let maxInside = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        withFileLock(target, async () => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          await new Promise((r) => setTimeout(r, 2));
          order.push(i);
          inside--;
        }),
      ),
    );
    expect(maxInside).toBe(1);
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('releases the lock when the function throws', async () => {
    const dir = await freshDir();
    const target = path.join(dir, 'thing.json');
    await expect(withFileLock(target, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await withFileLock(target, async () => 'next')).toBe('next');
  });

  it('excludes an independent acquirer (another process) until release', async () => {
    const dir = await freshDir();
    const target = path.join(dir, 'thing.json');
    const releaseFirst = await acquireDirLock(target);
    const owner = JSON.parse(await fs.readFile(`${target}.lock/owner.json`, 'utf8')) as { pid: number };
    expect(owner.pid).toBe(process.pid);
    let secondGot = false;
    const second = acquireDirLock(target).then((release) => {
      secondGot = true;
      return release;
    });
    await new Promise((r) => setTimeout(r, 150));
    expect(secondGot).toBe(false);
    await releaseFirst();
    const releaseSecond = await second;
    expect(secondGot).toBe(true);
    await releaseSecond();
    await expect(fs.stat(`${target}.lock`)).rejects.toThrow();
  });

  it('takes over a stale lock and times out on a live one', async () => {
    const dir = await freshDir();
    const target = path.join(dir, 'thing.json');
    await fs.mkdir(`${target}.lock`);
    const old = new Date(Date.now() - 60_000);
    await fs.utimes(`${target}.lock`, old, old);
    const release = await acquireDirLock(target, { timeoutMs: 1_000 });

    const err = await acquireDirLock(target, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(`${target}.lock`);
    expect((err as Error).message).toContain(`pid ${process.pid}`);
    await release();
  });

  it('keeps a held lock fresh so a long holder is not taken over', async () => {
    const dir = await freshDir();
    const target = path.join(dir, 'thing.json');
    const release = await acquireDirLock(target, { staleMs: 400 });
    const err = await acquireDirLock(target, { staleMs: 400, timeoutMs: 1_500 }).catch((e: unknown) => e);
    expect((err as Error).message).toContain('Timed out');
    await release();
  });
});

describe('task record: tasks.json', () => {
  const identity = (run: string, shot: number): TaskRecordPatch => ({
    episode: 1,
    shot,
    take: 1,
    image_path: path.join(run, '05_generated_images', 'Episode-01', `Episode-01-Shot-${String(shot).padStart(3, '0')}.png`),
    prompt: `prompt ${shot}`,
  });

  it('creates an entry with the original fields, run-relative paths and our additions', async () => {
    const run = await freshDir();
    const now = new Date('2025-01-17T02:30:15.000Z');
    const entry = await updateTaskRecord(run, 'Episode-01-001', { ...identity(run, 1), model: 'wan2.2-i2v-flash' }, now);
    expect(entry).toEqual({
      task_id: null,
      status: 'PENDING',
      image_path: '05_generated_images/Episode-01/Episode-01-Shot-001.png',
      prompt: 'prompt 1',
      video_url: null,
      video_path: null,
      thumbnail_path: null,
      submit_time: null,
      complete_time: null,
      error_message: null,
      episode: 1,
      shot: 1,
      take: 1,
      model: 'wan2.2-i2v-flash',
      takes: [],
      updated_at: '2025-01-17T02:30:15.000Z',
    });
    const text = await fs.readFile(tasksJsonPath(run), 'utf8');
    expect(Object.keys(JSON.parse(text)['Episode-01-001'])).toEqual(Object.keys(entry));
    expect(text.endsWith('}\n')).toBe(true);
    expect(text).toContain('\n  "Episode-01-001": {\n    "task_id": null,');
  });

  it('merges patches, keeps fields a studio tool added, and sorts keys naturally', async () => {
    const run = await freshDir();
    await writeFiles(run, {
      '08_generated_videos/tasks.json': JSON.stringify({ 'Episode-01-001': { status: 'PENDING', reviewer_note: 'keep me' } }),
    });
    await updateTaskRecord(run, 'Episode-01-001', {
      ...identity(run, 1),
      task_id: 't-1',
      status: 'SUCCESS',
      video_path: path.join(run, '08_generated_videos', 'Episode-01', 'Episode-01-Shot-001.mp4'),
      submit_time: '2025-01-17 10:30:15',
    });
    const second = await updateTaskRecord(run, 'Episode-01-001', { ...identity(run, 1), complete_time: '2025-01-17 10:32:45', error_message: undefined });
    expect(second).toMatchObject({
      task_id: 't-1',
      status: 'SUCCESS',
      video_path: '08_generated_videos/Episode-01/Episode-01-Shot-001.mp4',
      submit_time: '2025-01-17 10:30:15',
      complete_time: '2025-01-17 10:32:45',
      error_message: null,
      reviewer_note: 'keep me',
    });
    for (const key of ['Episode-02-001', 'Episode-01-1000', 'Episode-01-999', 'Episode-01-010']) {
      await updateTaskRecord(run, key, identity(run, 1));
    }
    expect(Object.keys(await readTaskRecord(run))).toEqual(['Episode-01-001', 'Episode-01-010', 'Episode-01-999', 'Episode-01-1000', 'Episode-02-001']);
  });

  it('loses no update among 50 concurrent writers in one process', async () => {
    const run = await freshDir();
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => updateTaskRecord(run, taskKey(1, i + 1), { ...identity(run, i + 1), task_id: `task-${i + 1}` })),
    );
    const record = await readTaskRecord(run);
    expect(Object.keys(record)).toHaveLength(50);
    expect(record['Episode-01-050']!.task_id).toBe('task-50');
    expect((await fs.readdir(path.dirname(tasksJsonPath(run)))).sort()).toEqual(['tasks.json']);
  });

  it('loses no update between two processes writing at once', async () => {
    const run = await freshDir();
    const lib = await transpileRunsModules();
    const worker = path.join(lib, 'worker.js');
    await fs.writeFile(
      worker,
      `const { updateTaskRecord } = require('./src/runs/taskRecord.js');
const [runDir, episode] = process.argv.slice(2).map((a, i) => (i === 1 ? Number(a) : a));
Promise.all(Array.from({ length: 25 }, (_, i) =>
  updateTaskRecord(runDir, 'Episode-0' + episode + '-' + String(i + 1).padStart(3, '0'),
    { episode, shot: i + 1, take: 1, image_path: 'x.png', prompt: 'p', task_id: 'pid-' + process.pid })))
  .catch((err) => { console.error(err); process.exit(1); });
`,
    );
    const codes = await Promise.all([1, 2].map((ep) => runNode(worker, [run, String(ep)])));
    expect(codes).toEqual([0, 0]);
    const record = await readTaskRecord(run);
    expect(Object.keys(record)).toHaveLength(50);
    expect(new Set(Object.values(record).map((e) => e.task_id)).size).toBe(2);
  });

  it('starts each update from the file on disk when someone else changed it since this process wrote it', async () => {
    const run = await freshDir();
    await updateTaskRecord(run, 'Episode-01-001', { ...identity(run, 1), task_id: 't-1' });
    // A person edits the file in place (same inode), then another process replaces it (new inode).
    const edited = JSON.parse(await fs.readFile(tasksJsonPath(run), 'utf8'));
    edited['Episode-01-001'].reviewer_note = 'looks good';
    await fs.writeFile(tasksJsonPath(run), JSON.stringify(edited));
    await updateTaskRecord(run, 'Episode-01-002', { ...identity(run, 2), task_id: 't-2' });
    const replaced = JSON.parse(await fs.readFile(tasksJsonPath(run), 'utf8'));
    replaced['Episode-01-003'] = { ...replaced['Episode-01-002'], shot: 3, task_id: 't-3' };
    await writeFiles(run, { '08_generated_videos/tasks.json.new': JSON.stringify(replaced) });
    await fs.rename(`${tasksJsonPath(run)}.new`, tasksJsonPath(run));
    await updateTaskRecord(run, 'Episode-01-004', { ...identity(run, 4), task_id: 't-4' });

    const record = await readTaskRecord(run);
    expect(Object.keys(record)).toEqual(['Episode-01-001', 'Episode-01-002', 'Episode-01-003', 'Episode-01-004']);
    expect(record['Episode-01-001']).toMatchObject({ task_id: 't-1', reviewer_note: 'looks good' });
    expect(record['Episode-01-003']!.task_id).toBe('t-3');
  });

  it('writes exactly what JSON.stringify would, in pieces a fraction of a large record\'s size', () => {
    const record: TaskRecord = {};
    for (let shot = 300; shot >= 1; shot--) {
      record[taskKey(1 + (shot % 2), shot)] = { task_id: `t-${shot}`, prompt: `镜头 ${shot}: "quoted" \\ and\nnew line ${'slow push-in; '.repeat(40)}`, takes: [{ take: 1, task_id: `t-${shot}` }] } as unknown as TaskRecordEntry;
    }
    const sorted = Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true })));
    const pieces = [...serialiseTaskRecord(record)];
    expect(pieces.join('')).toBe(`${JSON.stringify(sorted, null, 2)}\n`);
    expect(pieces.length).toBeGreaterThan(1);
    expect(Math.max(...pieces.map((p) => p.length))).toBeLessThan(pieces.join('').length / 2);
    expect([...serialiseTaskRecord({})].join('')).toBe('{}\n');
  });

  it('refuses to touch a corrupt tasks.json and names it', async () => {
    const run = await freshDir();
    const corrupt = '{"Episode-01-001": {"status": "SUCC';
    await writeFiles(run, { '08_generated_videos/tasks.json': corrupt });
    const err = await updateTaskRecord(run, 'Episode-01-002', identity(run, 2)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toContain(tasksJsonPath(run));
    await expect(readTaskRecord(run)).rejects.toBeInstanceOf(InputError);
    expect(await fs.readFile(tasksJsonPath(run), 'utf8')).toBe(corrupt);
    expect(await fs.readdir(path.dirname(tasksJsonPath(run)))).toEqual(['tasks.json']);

    await fs.writeFile(tasksJsonPath(run), '[1, 2]');
    await expect(updateTaskRecord(run, 'Episode-01-002', identity(run, 2))).rejects.toThrow(/not a task record/);
    expect(await fs.readFile(tasksJsonPath(run), 'utf8')).toBe('[1, 2]');
  });

  it('reads {} for a run without a record', async () => {
    expect(await readTaskRecord(await freshDir())).toEqual({});
  });

  it('formats times like the original tool, in local time', () => {
    expect(formatLocalTime(new Date(2025, 0, 7, 9, 5, 3))).toBe('2025-01-07 09:05:03');
  });
});

describe('submission journal', () => {
  const key = 'demo-1a2b3c4d.Episode-01.Shot-001.take-1';

  it('records a submission and reads it back', async () => {
    const run = await freshDir();
    expect(await readSubmission(run, key)).toBeUndefined();
    await recordSubmission(run, key, { taskId: 'task-1', submittedAt: '2025-01-17T02:30:15.000Z', requestId: 'req-1' });
    expect(await readSubmission(run, key)).toEqual({
      state: 'submitted',
      taskId: 'task-1',
      startedAt: '2025-01-17T02:30:15.000Z',
      submittedAt: '2025-01-17T02:30:15.000Z',
      requestId: 'req-1',
    });
    expect(journalPath(run, key)).toBe(path.join(journalDir(run), `${key}.json`));
  });

  it('accepts the same task id again but refuses a different one, leaving the entry intact', async () => {
    const run = await freshDir();
    await recordSubmission(run, key, { taskId: 'task-1', submittedAt: '2025-01-17T02:30:15.000Z' });
    const before = await fs.readFile(journalPath(run, key), 'utf8');
    await expect(recordSubmission(run, key, { taskId: 'task-1', submittedAt: '2025-01-17T02:31:00.000Z' })).resolves.toMatchObject({
      taskId: 'task-1',
      submittedAt: '2025-01-17T02:30:15.000Z',
    });
    const err = await recordSubmission(run, key, { taskId: 'task-2', submittedAt: '2025-01-17T02:32:00.000Z' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SubmissionConflictError);
    expect((err as SubmissionConflictError).existingTaskId).toBe('task-1');
    expect((err as Error).message).toContain('task-2');
    expect(await fs.readFile(journalPath(run, key), 'utf8')).toBe(before);
  });

  it('keeps a started marker until the task id is recorded', async () => {
    const run = await freshDir();
    await markSubmissionStarted(run, key, new Date('2025-01-17T02:30:00.000Z'));
    expect(await readSubmission(run, key)).toEqual({ state: 'started', startedAt: '2025-01-17T02:30:00.000Z' });
    await recordSubmission(run, key, { taskId: 'task-1', submittedAt: '2025-01-17T02:30:02.000Z' });
    expect(await readSubmission(run, key)).toMatchObject({ state: 'submitted', taskId: 'task-1', startedAt: '2025-01-17T02:30:00.000Z' });
    await expect(markSubmissionStarted(run, key)).rejects.toThrow(/already has task task-1/);
    await clearSubmissionStarted(run, key);
    expect(await readSubmission(run, key)).toMatchObject({ taskId: 'task-1' });
  });

  it('lets only one attempt of a take mark it started (check and mark under one lock)', async () => {
    const run = await freshDir();
    const results = await Promise.allSettled([markSubmissionStarted(run, key), markSubmissionStarted(run, key), markSubmissionStarted(run, key)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((x) => x.status === 'rejected')) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(SubmissionExistsError);
    await expect(markSubmissionStarted(run, key, new Date(), { replaceStarted: true })).resolves.toMatchObject({ state: 'started' });
  });

  it('clears a started marker after a definite rejection', async () => {
    const run = await freshDir();
    await markSubmissionStarted(run, key);
    await clearSubmissionStarted(run, key);
    expect(await readSubmission(run, key)).toBeUndefined();
    expect(await fs.readdir(journalDir(run))).toEqual([]);
  });

  it('gives keys that differ only in unsafe characters different files', async () => {
    const run = '/r';
    const a = journalPath(run, 'run/1.Episode-01');
    const b = journalPath(run, 'run_1.Episode-01');
    const c = journalPath(run, '../escape');
    expect(a).not.toBe(b);
    expect(path.basename(a)).toMatch(/^run_1\.Episode-01-[0-9a-f]{8}\.json$/);
    expect(path.dirname(c)).toBe(journalDir(run));
  });

  it('reports a corrupt journal entry instead of guessing', async () => {
    const run = await freshDir();
    await writeFiles(run, { [path.relative(run, journalPath(run, key))]: '{"state":"submitted"}' });
    await expect(readSubmission(run, key)).rejects.toBeInstanceOf(InputError);
  });
});

/** Compiles the runs modules (and their one local dependency) to CommonJS so a plain node process can load them. */
async function transpileRunsModules(): Promise<string> {
  const out = await freshDir('lib');
  const srcRoot = path.resolve(__dirname, '..', 'src');
  for (const rel of ['errors.ts', 'atomic.ts', 'runs/lock.ts', 'runs/paths.ts', 'runs/taskRecord.ts']) {
    const source = await fs.readFile(path.join(srcRoot, rel), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    });
    const target = path.join(out, 'src', rel.replace(/\.ts$/, '.js'));
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, outputText);
  }
  return out;
}

function runNode(script: string, args: string[]): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', resolve);
  });
}

describe('sweepLeftovers', () => {
  it('removes what crashed writers left behind, and nothing that is live or a real output', async () => {
    const dir = await freshDir('08_generated_videos');
    const old = new Date(Date.now() - 10_000);
    const ancient = new Date(Date.now() - 10 * 60_000);
    const deadPid = 2 ** 22 + 12345; // above Linux's pid_max default, so never a live process
    const file = async (rel: string, mtime?: Date) => {
      await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
      await fs.writeFile(path.join(dir, rel), 'x');
      if (mtime) await fs.utimes(path.join(dir, rel), mtime, mtime);
    };
    await file('tasks.json');
    await file(`.tasks.json.${deadPid}.abcdef.tmp`, old); // its writer is gone
    await file(`.tasks.json.${process.pid}.abcdef.tmp`, old); // being written right now
    await file('Episode-01/Episode-01-Shot-001.mp4');
    await file('Episode-01/Episode-01-Shot-002.mp4.1a2b3c4d.part', ancient); // a download nobody finished
    await file('Episode-01/Episode-01-Shot-003.mp4.1a2b3c4d.part'); // a download in progress
    await fs.mkdir(path.join(dir, '.i2v', 'journal', 'x.json.lock'), { recursive: true });
    await fs.writeFile(path.join(dir, '.i2v', 'journal', 'x.json.lock', 'owner.json'), JSON.stringify({ pid: deadPid, hostname: os.hostname() }));
    await fs.utimes(path.join(dir, '.i2v', 'journal', 'x.json.lock'), old, old);
    await fs.mkdir(path.join(dir, 'live.json.lock'));
    await fs.writeFile(path.join(dir, 'live.json.lock', 'owner.json'), JSON.stringify({ pid: process.pid, hostname: os.hostname() }));

    const removed = (await sweepLeftovers(dir)).map((p) => path.relative(dir, p)).sort();
    expect(removed).toEqual([`.i2v/journal/x.json.lock`, `.tasks.json.${deadPid}.abcdef.tmp`, 'Episode-01/Episode-01-Shot-002.mp4.1a2b3c4d.part']);
    const left = (await fs.readdir(dir, { recursive: true })).map(String).sort();
    expect(left).toEqual(expect.arrayContaining(['tasks.json', `.tasks.json.${process.pid}.abcdef.tmp`, 'Episode-01/Episode-01-Shot-001.mp4', 'Episode-01/Episode-01-Shot-003.mp4.1a2b3c4d.part', 'live.json.lock']));
  });
});

describe('awaitSubmitSlot', () => {
  it('lets no more than the limit start in any one-second window (plus the slot hold), however many ask at once', async () => {
    const run = await freshDir();
    const started: number[] = [];
    await Promise.all(Array.from({ length: 5 }, async () => started.push(await awaitSubmitSlot(run, 2))));
    started.sort((a, b) => a - b);
    for (let i = 2; i < started.length; i++) expect(started[i]! - started[i - 2]!).toBeGreaterThanOrEqual(1000 + SLOT_HOLD_MS);
  });

  it('is not stopped by a record a power cut left empty or unreadable (it is written without fsync)', async () => {
    const run = await freshDir();
    const file = path.join(journalDir(run), 'submit-pacer.json');
    await fs.mkdir(path.dirname(file), { recursive: true });
    for (const leftover of ['', '[17000', '{"not":"a list"}']) {
      await fs.writeFile(file, leftover);
      const at = await awaitSubmitSlot(run, 1, () => 1_000_000);
      expect(at).toBe(1_000_000);
      expect(JSON.parse(await fs.readFile(file, 'utf8'))).toEqual([1_000_000]);
    }
  });
});
