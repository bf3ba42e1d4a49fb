/** `i2v report <runDir>`: (re)writes `08_generated_videos/report.xlsx` and `index.html` and says what is in them. */
import { writeReports } from '../reports';
import { formatSpend } from '../reports/model';

export async function reportCommand(runDir: string, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  const { excelPath, galleryPath, report } = await writeReports(runDir);
  for (const episode of report.episodes) {
    const t = episode.totals;
    out.write(`${episode.name}: ${t.shots} shots · ${t.done} done · ${t.failed} failed · ${t.inProgress} in progress · ${t.notStarted} not started · spend ${formatSpend(t.spend)}\n`);
  }
  const t = report.totals;
  out.write(`Total: ${t.done}/${t.shots} done, spend ${formatSpend(t.spend)}${t.unpriced > 0 ? ` (+${t.unpriced} take(s) with no known price)` : ''}\n`);
  out.write(`Excel report: ${excelPath}\nGallery: ${galleryPath}\n`);
}
