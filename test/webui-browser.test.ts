/**
 * The Temporal Web UI of the embedded server, in a real browser (Debian's Chromium, driven by playwright-core),
 * during a demo run: the link `i2v run` prints (the workflow list filtered by the I2vRun search attribute)
 * shows both episode workflows and all six shot workflows, and each workflow's page shows the summary we start
 * it with. UI 2.54 has no summary column in the list (the list API returns no user metadata); summaries are on
 * each workflow's "User Metadata" tab, rendered as Markdown in an iframe. Leaves screenshots in
 * test-results/webui-screenshots for a human look. Nothing but localhost is reachable from the page.
 */
import { cp, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_GENERATION, DEFAULTS, providerConfig } from '../src/config';
import { startEmulator, type Emulator } from '../src/emulator';
import type { RunSettings } from '../src/cli/plan';
import { runCommand, type RunSummary } from '../src/cli/run';
import { scanRun } from '../src/runs/scan';
import { freePort, runUiUrl, startEmbeddedServer, type TemporalHandle } from '../src/temporal/connection';
import { episodeWorkflowId, shotWorkflowId } from '../src/workflows/ids';
import { inPage, launchChromium, requireBrowser } from './helpers/browser';
import { artefactPath } from './helpers/scratch';

const ROOT = path.join(__dirname, '..');
/** How long the list may take to show every workflow of the run (they start over the first seconds of it). */
const LIST_TIMEOUT_MS = 30_000;
/** A row of the UI's workflow table (Temporal UI 2.54). */
const ROW = 'tr[data-testid="workflows-summary-configurable-table-row"]';

let work: string;
let temporal: TemporalHandle | undefined;
let emulator: Emulator | undefined;
let browser: Browser | undefined;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'i2v-webui-'));
  // All three at once; each is kept as soon as it is up, so afterAll closes it even if another fails to start.
  const started = await Promise.allSettled([
    // A private server on free ports (gRPC and Web UI), so the test never meets a developer's own server.
    freePort().then(async (uiPort) => (temporal = await startEmbeddedServer({ stateDir: path.join(work, 'state'), ip: '127.0.0.1', port: 0, uiPort }))),
    // Slow enough (each shot ≥ 4.5 s at the provider) that the run is still going while the browser looks.
    startEmulator({ pendingMs: 500, runningMs: 4000, videoSeconds: 1 }).then((e) => (emulator = e)),
    launchChromium().then((b) => (browser = b)),
  ]);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
});

afterAll(async () => {
  await browser?.close();
  await temporal?.close();
  await emulator?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

// The demo's settings (all three shots of an episode at once), at 480P and with quick polling.
const settings: RunSettings = {
  generation: { ...DEFAULT_GENERATION, resolution: '480P' },
  deadlineSeconds: 600,
  poll: { initialSeconds: 0.5, factor: 1.5, maxSeconds: 1 },
  maxInFlight: DEFAULTS.maxInFlight,
};

describe('the Temporal Web UI during a demo run, in Chromium', () => {
  it('lists the episode and all its shot workflows under the run\'s search attribute, each with its summary', async () => {
    const page = await requireBrowser(browser).newPage({ viewport: { width: 1600, height: 1000 } });
    expect(temporal?.uiUrl, 'the embedded server was started with a Web UI port').toBeTruthy();
    const handle = temporal!;
    const uiUrl = handle.uiUrl!;
    expect(handle.searchAttributes).toBe(true);

    // Chromium resolves no host name but localhost (see helpers/browser.ts); every request is checked below.
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));

    const runDir = path.join(work, 'demo-run');
    // Inputs only: a developer's earlier demo outputs must not make the run look finished.
    for (const dir of ['05_generated_images', '07_video_prompts']) {
      await cp(path.join(ROOT, 'examples', 'demo-run', dir), path.join(runDir, dir), { recursive: true });
    }
    const plan = await scanRun(runDir);
    const runId = plan.runId;
    const expected = new Map<string, { type: string; summary: string }>();
    for (const episode of plan.episodes) {
      expected.set(episodeWorkflowId(runId, episode.episode), { type: 'episodeWorkflow', summary: `${episode.name} of ${runId}: ${episode.shots.length} shots` });
      for (const shot of episode.shots) {
        expected.set(shotWorkflowId(runId, shot.episode, shot.shot, 1), { type: 'shotWorkflow', summary: `${shot.name} take 1: ${shot.prompt.slice(0, 60)}` });
      }
    }
    expect(expected.size, 'the demo run has 2 episodes × 3 shots').toBe(8);

    // Not awaited: the browser looks while the run goes on.
    let finished = false;
    const run: Promise<RunSummary> = runCommand(runDir, {
      provider: providerConfig('emulator', { baseUrl: emulator!.baseUrl }), settings, temporal: handle, out: quiet(), refreshMs: 500,
    }).finally(() => (finished = true));
    run.catch(() => undefined); // awaited below; until then a failure must not count as unhandled

    const shots = artefactPath('webui-screenshots');
    await mkdir(shots, { recursive: true });
    try {
      // The list, filtered by the run's search attribute: the link `i2v run` prints.
      const listUrl = runUiUrl(uiUrl, handle.namespace, runId);
      expect(listUrl).toBe(`${uiUrl}/namespaces/default/workflows?query=${encodeURIComponent(`I2vRun="${runId}"`)}`);
      const rows = await waitForRows(page, listUrl, [...expected.keys()], () => finished);
      expect(rows.map((r) => r.id).sort(), 'exactly this run\'s workflows are listed').toEqual([...expected.keys()].sort());
      for (const row of rows) expect(row.type, row.id).toBe(expected.get(row.id)!.type);
      // Seen during the run: the UI itself says the episodes are still running (their shots take ≥ 4.5 s each
      // at the emulator, and the list is looked at again as soon as it has rendered).
      const running = rows.filter((r) => r.status === 'RUNNING').map((r) => r.id);
      expect(running, 'both episodes are running when the list first shows all their shots').toEqual(expect.arrayContaining([episodeWorkflowId(runId, 1), episodeWorkflowId(runId, 2)]));
      // The filter is shown as a chip, and the heading counts the run's workflows.
      await page.locator(`button[title=${JSON.stringify(`I2vRun = "${runId}"`)}]`).waitFor({ state: 'visible', timeout: 5_000 });
      await page.getByText('8 Workflows', { exact: true }).waitFor({ state: 'visible', timeout: 5_000 });
      const listShot = path.join(shots, 'webui-run-list.png');
      await page.screenshot({ path: listShot, fullPage: true });

      // Summaries: on each workflow's page (opened from the list, as a person would), "User Metadata" tab.
      const seen: string[] = [];
      let detailShot = '';
      for (const [id, { summary }] of expected) {
        // The list is opened afresh for each workflow, from the link `i2v run` prints. (Going back in the
        // browser's history instead once left CI's busy machine on a page without the row, for 10 s.)
        if (seen.length > 0) await waitForRows(page, listUrl, [id]);
        await page.getByRole('link', { name: id, exact: true }).click();
        await page.getByRole('heading', { name: id }).first().waitFor({ state: 'visible', timeout: 10_000 });
        await page.getByText('User Metadata', { exact: true }).first().click();
        await page.getByText('Summary', { exact: true }).first().waitFor({ state: 'visible', timeout: 10_000 });
        // The UI renders summaries as Markdown, each in an iframe of its own.
        await expect.poll(() => frameTexts(page), { timeout: 10_000, interval: 250, message: `the summary of ${id} on its User Metadata tab` })
          .toContain(summary);
        seen.push(`${id}: ${summary}`);
        if (id === shotWorkflowId(runId, 1, 1, 1)) {
          detailShot = path.join(shots, 'webui-shot-user-metadata.png');
          await page.screenshot({ path: detailShot, fullPage: true });
        }
      }
      for (const file of [listShot, detailShot]) expect((await stat(file)).size).toBeGreaterThan(10_000);
      console.info(`Web UI screenshots: ${listShot} ${detailShot}\nSummaries seen:\n  ${seen.join('\n  ')}`);

      const summary = await run;
      expect(summary).toMatchObject({ succeeded: 6, failed: 0 });
      expect(requests.filter((u) => !u.startsWith(`${uiUrl}/`)), 'the page fetched nothing beyond the UI').toEqual([]);
    } finally {
      await run.catch(() => undefined);
      await page.close();
    }
  }, 150_000);
});

interface Row {
  id: string;
  status: string;
  type: string;
}

/**
 * Opens the list and looks again (the UI's Refresh button; a reload if there is none) until it shows every id
 * in `ids`. A look is complete when the table shows what the UI's list request returned. Bounded by
 * LIST_TIMEOUT_MS; fails early, with what it saw, if the run finishes first (when `runFinished` is given).
 */
async function waitForRows(page: Page, url: string, ids: string[], runFinished = () => false): Promise<Row[]> {
  const deadline = Date.now() + LIST_TIMEOUT_MS;
  const refresh = page.getByRole('button', { name: 'Refresh', exact: true });
  for (let look = 0; ; look++) {
    const again = async () => ((await refresh.isVisible()) ? refresh.click() : page.reload());
    const [response] = await Promise.all([
      page.waitForResponse((r) => /^\/api\/v1\/namespaces\/[^/]+\/workflows$/.test(new URL(r.url()).pathname), { timeout: 15_000 }),
      look === 0 ? page.goto(url) : again(),
    ]);
    const listed = ((await response.json()) as { executions?: unknown[] }).executions?.length ?? 0;
    await page.waitForFunction(`document.querySelectorAll(${JSON.stringify(ROW)}).length === ${listed}`, undefined, { timeout: 10_000 });
    const rows = await readRows(page);
    if (ids.every((id) => rows.some((r) => r.id === id))) return rows;
    if (runFinished() || Date.now() > deadline) {
      throw new Error(`The Web UI list did not show every workflow of the run ${runFinished() ? 'before the run finished' : `within ${LIST_TIMEOUT_MS / 1000} s`}.\n`
        + `Expected: ${ids.join(', ')}\nShown: ${rows.map((r) => `${r.id} (${r.status})`).join(', ') || 'none'}\nPage text:\n${await mainText(page)}`);
    }
  }
}

/** The table's rows, by its column headings (Status, Workflow ID, Type). */
function readRows(page: Page): Promise<Row[]> {
  return inPage<Row[]>(page, `(() => {
    const table = document.querySelector(${JSON.stringify(ROW)})?.closest('table');
    if (!table) return [];
    const headings = [...table.querySelectorAll('thead th')].map((th) => th.innerText.trim());
    const col = (name) => headings.indexOf(name);
    return [...table.querySelectorAll(${JSON.stringify(ROW)})].map((tr) => {
      const cell = (name) => (tr.cells[col(name)]?.innerText ?? '').trim();
      return { id: cell('Workflow ID'), status: cell('Status'), type: cell('Type') };
    });
  })()`);
}

/** The text of every iframe in the page (where the UI renders Markdown: summaries, details). */
async function frameTexts(page: Page): Promise<string[]> {
  const texts: string[] = [];
  for (const frame of page.frames()) {
    if (frame === page.mainFrame()) continue;
    texts.push((await frame.locator('body').innerText({ timeout: 1_000 }).catch(() => '')).trim());
  }
  return texts;
}

function mainText(page: Page): Promise<string> {
  return inPage<string>(page, `(document.querySelector('main') ?? document.body).innerText.slice(0, 3000)`);
}

const quiet = () => new Writable({ write: (_chunk, _enc, done) => done() }) as unknown as NodeJS.WriteStream;
