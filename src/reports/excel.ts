/**
 * `08_generated_videos/report.xlsx`: a summary sheet (one line per episode, plus the run's total) and one sheet
 * per episode with a row per shot: its 150-px thumbnail embedded in the row, prompt, status, take, task id, a
 * relative link to the video, duration, resolution, time to generate, cost and error.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import ExcelJS from 'exceljs';
import { writeFileAtomic } from '../atomic';
import { videosDir } from '../runs/paths';
import { formatDuration, formatSpend, linkFromReports, type EpisodeReport, type ReportTotals, type RunReport, type ShotRow } from './model';

export const EXCEL_REPORT_NAME = 'report.xlsx';

/** Excel measures row height in points (3/4 px) and column width in characters (about 7 px at the default font). */
const PX_PER_POINT = 4 / 3;
const PX_PER_CHAR = 7;
const THUMBNAIL_COLUMN_PX = 156;
const THUMBNAIL_PADDING_PX = 3;
/** Drawing offsets are in EMU: 914,400 per inch, 96 px per inch. */
const EMU_PER_PX = 9525;

const STATUS_FILL: Record<string, string> = {
  SUCCESS: 'FFD9F2D9',
  FAILED: 'FFF8D0D0',
  NOT_STARTED: 'FFEDEDED',
};
const IN_PROGRESS_FILL = 'FFFFF0C2';
const HEADER_FILL = 'FF2F3B4C';

/** Writes the workbook to a temp name and renames it into place; returns its path. */
export async function writeExcelReport(runDir: string, report: RunReport): Promise<string> {
  const workbook = new ExcelJS.Workbook();
  workbook.creator = 'i2v-pipeline';
  workbook.created = report.generatedAt;
  const currency = singleCurrency(report);

  addSummarySheet(workbook, report, currency);
  for (const episode of report.episodes) await addEpisodeSheet(workbook, runDir, episode);

  const file = path.join(videosDir(runDir), EXCEL_REPORT_NAME);
  // Stored, not deflated: the thumbnails (most of the file) are PNGs already, and deflating every part in memory
  // took about 40 % more of the worker's memory at the end of a 400-shot episode for a 12 % smaller file.
  const zipped = await workbook.xlsx.writeBuffer({ zip: { compression: 'STORE' } } as ExcelJS.XlsxWriteOptions);
  await writeFileAtomic(file, zipped as unknown as Uint8Array);
  return file;
}

const SUMMARY_COLUMNS = [
  { header: 'Episode', key: 'episode', width: 14 },
  { header: 'Shots', key: 'shots', width: 8 },
  { header: 'Done', key: 'done', width: 8 },
  { header: 'Failed', key: 'failed', width: 8 },
  { header: 'In progress', key: 'inProgress', width: 11 },
  { header: 'Not started', key: 'notStarted', width: 11 },
  { header: 'Spend', key: 'spend', width: 14 },
  { header: 'Video (s)', key: 'videoSeconds', width: 10 },
  { header: 'Generation time', key: 'generationTime', width: 16 },
  { header: 'Elapsed', key: 'elapsed', width: 12 },
] as const;

/** The summary table starts below a short title block. */
export const SUMMARY_HEADER_ROW = 4;

function addSummarySheet(workbook: ExcelJS.Workbook, report: RunReport, currency: string | undefined): void {
  const sheet = workbook.addWorksheet('Summary', { views: [{ state: 'frozen', ySplit: SUMMARY_HEADER_ROW }] });
  sheet.columns = SUMMARY_COLUMNS.map((c) => ({ key: c.key, width: c.width }));
  sheet.getCell('A1').value = `i2v report: ${report.runId}`;
  sheet.getCell('A1').font = { bold: true, size: 14 };
  sheet.getCell('A2').value = `Run folder: ${report.runDir}`;
  sheet.getCell('A3').value = `Generated: ${report.generatedAt.toISOString()}. Spend and Cost are list prices of every finished take, earlier takes included; failed tasks are not billed.`;

  const header = sheet.getRow(SUMMARY_HEADER_ROW);
  header.values = SUMMARY_COLUMNS.map((c) => c.header);
  styleHeader(header);

  const addTotals = (label: string, totals: ReportTotals): ExcelJS.Row => {
    const row = sheet.addRow({
      episode: label,
      shots: totals.shots,
      done: totals.done,
      failed: totals.failed,
      inProgress: totals.inProgress,
      notStarted: totals.notStarted,
      spend: currency !== undefined ? (totals.spend[0]?.amount ?? 0) : formatSpend(totals.spend),
      videoSeconds: round1(totals.videoSeconds),
      generationTime: formatDuration(totals.generationSeconds),
      elapsed: formatDuration(totals.elapsedSeconds),
    });
    if (currency !== undefined) row.getCell('spend').numFmt = moneyFormat(currency);
    if (totals.failed > 0) row.getCell('failed').font = { bold: true, color: { argb: 'FFC00000' } };
    return row;
  };
  for (const episode of report.episodes) addTotals(episode.name, episode.totals);
  const total = addTotals('Total', report.totals);
  total.font = { bold: true };
  total.eachCell((cell) => (cell.border = { top: { style: 'thin' } }));

  if (report.totals.unpriced > 0) {
    sheet.addRow([]);
    sheet.addRow([`${report.totals.unpriced} finished take(s) have no known cost (model or resolution not in config/prices.json, or no video to measure); Spend leaves them out.`]);
  }
}

const EPISODE_COLUMNS = [
  { header: 'Thumbnail', key: 'thumbnail', width: THUMBNAIL_COLUMN_PX / PX_PER_CHAR },
  { header: 'Shot', key: 'shot', width: 22 },
  { header: 'Prompt', key: 'prompt', width: 50 },
  { header: 'Status', key: 'status', width: 13 },
  { header: 'Take', key: 'take', width: 6 },
  { header: 'Task ID', key: 'taskId', width: 38 },
  { header: 'Video', key: 'video', width: 28 },
  { header: 'Duration (s)', key: 'duration', width: 12 },
  { header: 'Resolution', key: 'resolution', width: 12 },
  { header: 'Time to generate', key: 'generationTime', width: 16 },
  { header: 'Cost', key: 'cost', width: 12 },
  { header: 'Error', key: 'error', width: 50 },
] as const;

async function addEpisodeSheet(workbook: ExcelJS.Workbook, runDir: string, episode: EpisodeReport): Promise<void> {
  const sheet = workbook.addWorksheet(episode.name, { views: [{ state: 'frozen', ySplit: 1 }] });
  sheet.columns = EPISODE_COLUMNS.map((c) => ({ header: c.header, key: c.key, width: c.width }));
  styleHeader(sheet.getRow(1));
  sheet.autoFilter = { from: { row: 1, column: 2 }, to: { row: 1, column: EPISODE_COLUMNS.length } };

  for (const shot of episode.rows) {
    const row = sheet.addRow(rowValues(shot));
    row.alignment = { vertical: 'top', wrapText: true };
    row.getCell('status').fill = { type: 'pattern', pattern: 'solid', fgColor: { argb: STATUS_FILL[shot.status] ?? IN_PROGRESS_FILL } };
    if (shot.error) row.getCell('error').font = { color: { argb: 'FFC00000' } };
    if (shot.videoPath) row.getCell('video').font = { color: { argb: 'FF0563C1' }, underline: true };
    if (shot.generationSeconds !== undefined) row.getCell('generationTime').numFmt = '[h]:mm:ss';
    if (shot.cost.length === 1) row.getCell('cost').numFmt = moneyFormat(shot.cost[0]!.currency);
    if (shot.durationSeconds !== undefined) row.getCell('duration').numFmt = '0.0';

    const thumbnail = shot.thumbnail && (await readThumbnail(runDir, shot.thumbnail.path));
    if (shot.thumbnail && thumbnail) {
      const scale = Math.min(1, (THUMBNAIL_COLUMN_PX - 2 * THUMBNAIL_PADDING_PX) / shot.thumbnail.width);
      const ext = { width: Math.round(shot.thumbnail.width * scale), height: Math.round(shot.thumbnail.height * scale) };
      // One image per row, inside the row's own thumbnail cell and set to "move and size with cells", so
      // sorting moves it with its row and filtering hides it with its row.
      const imageId = workbook.addImage({ buffer: thumbnail as unknown as ExcelJS.Buffer, extension: 'png' });
      sheet.addImage(imageId, { ...cellAnchor(row.number - 1, ext), editAs: 'twoCell' });
      row.height = Math.max(row.height ?? 15, (ext.height + 2 * THUMBNAIL_PADDING_PX) / PX_PER_POINT);
    }
  }
}

/**
 * A picture of `size` px inside the first cell of the 0-based row `row`, padded, as a two-cell anchor in exact
 * EMU offsets. (exceljs's one-cell anchors carry an `editAs` attribute the schema forbids there, which Excel
 * may "repair"; its fractional cell positions assume a default cell size.)
 */
function cellAnchor(row: number, size: { width: number; height: number }): ExcelJS.ImageRange {
  const pad = THUMBNAIL_PADDING_PX * EMU_PER_PX;
  return {
    tl: { nativeCol: 0, nativeColOff: pad, nativeRow: row, nativeRowOff: pad },
    br: { nativeCol: 0, nativeColOff: pad + size.width * EMU_PER_PX, nativeRow: row, nativeRowOff: pad + size.height * EMU_PER_PX },
  } as unknown as ExcelJS.ImageRange;
}

function rowValues(shot: ShotRow): Record<string, ExcelJS.CellValue> {
  return {
    shot: shot.planned ? shot.name : `${shot.name} (no longer in the run folder)`,
    prompt: shot.prompt,
    status: shot.status,
    take: shot.take ?? null,
    taskId: shot.taskId ?? null,
    video: shot.videoPath ? { text: path.posix.basename(shot.videoPath), hyperlink: linkFromReports(shot.videoPath) } : null,
    duration: shot.durationSeconds !== undefined ? round1(shot.durationSeconds) : null,
    resolution: shot.videoSize ?? shot.resolutionTier ?? null,
    // Excel durations are fractions of a day; `[h]:mm:ss` shows them as 0:02:31.
    generationTime: shot.generationSeconds !== undefined ? shot.generationSeconds / 86_400 : null,
    // A number when it can be (one currency), so the column sums; text in the unlikely mixed case.
    cost: shot.cost.length === 0 ? null : shot.cost.length === 1 ? shot.cost[0]!.amount : formatSpend(shot.cost),
    error: shot.error ?? null,
  };
}

/** The PNG bytes, or undefined when the file went away since the report was built (the row then has no picture). */
async function readThumbnail(runDir: string, runRelative: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(path.isAbsolute(runRelative) ? runRelative : path.join(runDir, runRelative));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function styleHeader(row: ExcelJS.Row): void {
  row.font = { bold: true, color: { argb: 'FFFFFFFF' } };
  row.alignment = { vertical: 'middle' };
  row.eachCell((cell) => (cell.fill = { type: 'pattern', pattern: 'solid', fgColor: { argb: HEADER_FILL } }));
}

/** The one currency of the run's spend ('' when nothing is priced yet), or undefined when there are several. */
function singleCurrency(report: RunReport): string | undefined {
  const currencies = new Set(report.totals.spend.map((m) => m.currency));
  return currencies.size === 1 ? [...currencies][0] : currencies.size === 0 ? '' : undefined;
}

function moneyFormat(currency: string): string {
  return currency ? `#,##0.00 "${currency.replace(/"/g, '')}"` : '#,##0.00';
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
