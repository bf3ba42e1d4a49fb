/**
 * `08_generated_videos/index.html`: a self-contained page to review a run in a browser. Per episode, a grid of
 * shots with an inline player (the small thumbnail as its poster), prompt, status and error; failed shots are
 * outlined in red. Every link is relative, so the folder can be moved or shared as a whole; nothing is fetched
 * from the network (inline CSS, system fonts, no scripts), and a Content-Security-Policy makes sure of it.
 */
import * as path from 'node:path';
import { writeFileAtomic } from '../atomic';
import { videosDir } from '../runs/paths';
import { formatDuration, formatSpend, linkFromReports, type EpisodeReport, type ReportTotals, type RunReport, type ShotRow } from './model';

export const GALLERY_NAME = 'index.html';

/** Writes the page to a temp name and renames it into place; returns its path. */
export async function writeGallery(runDir: string, report: RunReport): Promise<string> {
  const file = path.join(videosDir(runDir), GALLERY_NAME);
  await writeFileAtomic(file, renderGallery(report));
  return file;
}

/** The page as a string (pure). */
export function renderGallery(report: RunReport): string {
  const title = `i2v gallery: ${report.runId}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src 'self' file: data:; media-src 'self' file:">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>${esc(path.basename(report.runDir))}</h1>
<p class="meta">${esc(report.runDir)} · generated ${esc(report.generatedAt.toISOString())}</p>
<p class="totals">${totalsLine(report.totals)}</p>
${report.episodes.length > 1 ? `<nav>${report.episodes.map((e) => `<a href="#${esc(e.name)}">${esc(e.name)}${e.totals.failed > 0 ? ` <span class="nav-failed">${e.totals.failed} failed</span>` : ''}</a>`).join('')}</nav>` : ''}
</header>
<main>
${report.episodes.map(episodeSection).join('\n')}
</main>
</body>
</html>
`;
}

function episodeSection(episode: EpisodeReport): string {
  const assembled = episode.episodeVideo
    ? ` · <a href="${esc(href(episode.episodeVideo))}">assembled episode (${esc(path.posix.basename(episode.episodeVideo))})</a>`
    : '';
  return `<section id="${esc(episode.name)}">
<h2>${esc(episode.name)}</h2>
<p class="totals">${totalsLine(episode.totals)}${assembled}</p>
<div class="grid">
${episode.rows.map(shotCard).join('\n')}
</div>
</section>`;
}

function shotCard(shot: ShotRow): string {
  const statusClass = shot.status === 'SUCCESS' ? 'done' : shot.status === 'FAILED' ? 'failed' : shot.status === 'NOT_STARTED' ? 'not-started' : 'in-progress';
  const facts: Array<[string, string | undefined]> = [
    ['take', shot.take?.toString()],
    ['duration', shot.durationSeconds !== undefined ? `${shot.durationSeconds.toFixed(1)} s` : undefined],
    ['resolution', shot.videoSize ?? shot.resolutionTier],
    ['generated in', shot.generationSeconds !== undefined ? formatDuration(shot.generationSeconds) : undefined],
    ['cost', shot.cost.length > 0 ? `${formatSpend(shot.cost)}${shot.paidTakes > 1 ? ` (${shot.paidTakes} takes)` : ''}` : undefined],
    ['task', shot.taskId],
  ];
  return `<article class="shot ${statusClass}" id="${esc(shot.key)}" data-key="${esc(shot.key)}" data-status="${esc(shot.status)}">
${media(shot)}
<div class="body">
<h3>${esc(shot.name)} <span class="badge">${esc(statusLabel(shot))}</span></h3>
${shot.error ? `<p class="error" role="alert">${esc(shot.error)}</p>` : ''}
<p class="prompt">${esc(shot.prompt)}</p>
<dl>${facts.filter(([, v]) => v).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v!)}</dd>`).join('')}</dl>
${shot.planned ? '' : '<p class="note">This shot is in tasks.json but no longer in the run folder.</p>'}
</div>
</article>`;
}

/** The video when there is one (its first frame as poster), else the thumbnail, else the source still. */
function media(shot: ShotRow): string {
  const poster = shot.thumbnail ? ` poster="${esc(href(shot.thumbnail.path))}"` : '';
  if (shot.videoPath) return `<video controls preload="metadata" src="${esc(href(shot.videoPath))}"${poster}></video>`;
  if (shot.thumbnail) return `<img src="${esc(href(shot.thumbnail.path))}" alt="${esc(`${shot.name} first frame`)}">`;
  if (shot.imagePath) {
    return `<figure><img src="${esc(href(shot.imagePath))}" alt="${esc(`${shot.name} source image`)}"><figcaption>source image, no video</figcaption></figure>`;
  }
  return '<div class="placeholder">no video</div>';
}

function statusLabel(shot: ShotRow): string {
  switch (shot.status) {
    case 'SUCCESS':
      return shot.videoPath ? 'done' : 'done, video missing';
    case 'FAILED':
      return 'FAILED';
    case 'NOT_STARTED':
      return 'not started';
    default:
      return shot.status.toLowerCase();
  }
}

function totalsLine(t: ReportTotals): string {
  const parts = [
    `${t.shots} shot${t.shots === 1 ? '' : 's'}`,
    `${t.done} done`,
    t.failed > 0 ? `<strong class="failed-count">${t.failed} failed</strong>` : '0 failed',
    `${t.inProgress} in progress`,
    `${t.notStarted} not started`,
    `spend ${esc(formatSpend(t.spend))}${t.unpriced > 0 ? ` (+${t.unpriced} take${t.unpriced === 1 ? '' : 's'} unpriced)` : ''}`,
    `${t.videoSeconds.toFixed(1)} s of video`,
  ];
  if (t.elapsedSeconds !== undefined) parts.push(`${esc(formatDuration(t.elapsedSeconds))} elapsed`);
  return parts.join(' · ');
}

/** A run-relative path as a URL relative to the page, each segment percent-encoded (`#`, `?`, spaces, CJK). */
function href(runRelative: string): string {
  const link = linkFromReports(runRelative);
  if (path.posix.isAbsolute(link) || path.win32.isAbsolute(link)) {
    const posix = link.replace(/\\/g, '/');
    return `file://${posix.startsWith('/') ? '' : '/'}${posix.split('/').map(encodeURIComponent).join('/')}`;
  }
  return link.split('/').map((s) => (s === '..' ? s : encodeURIComponent(s))).join('/');
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const CSS = `
:root{color-scheme:light;--fail:#c62828;--ok:#2e7d32;--warn:#b26a00;--muted:#667}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","PingFang SC","Microsoft YaHei",sans-serif;color:#1d2330;background:#f4f5f8}
header{padding:16px 24px;background:#2f3b4c;color:#fff}
header h1{margin:0 0 4px;font-size:20px}
header .meta{margin:0;color:#c5cbd6;font-size:12px;word-break:break-all}
header .totals{margin:6px 0 0}
nav{display:flex;flex-wrap:wrap;gap:8px;margin-top:10px}
nav a{color:#fff;background:#44546a;padding:3px 10px;border-radius:12px;text-decoration:none}
.nav-failed{color:#ffb4b4;font-weight:600}
main{padding:8px 24px 32px}
section h2{margin:24px 0 2px;font-size:18px}
section>.totals{margin:0 0 12px;color:var(--muted)}
.failed-count{color:var(--fail)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px}
.shot{background:#fff;border:1px solid #d9dce3;border-radius:8px;overflow:hidden;display:flex;flex-direction:column}
.shot video,.shot img{display:block;width:100%;aspect-ratio:16/9;object-fit:contain;background:#111}
.shot figure{margin:0;position:relative}
.shot figcaption{position:absolute;left:6px;bottom:6px;background:rgba(0,0,0,.6);color:#fff;font-size:11px;padding:1px 6px;border-radius:4px}
.placeholder{aspect-ratio:16/9;display:flex;align-items:center;justify-content:center;background:#e6e8ee;color:var(--muted)}
.body{padding:8px 12px 12px}
.body h3{margin:0 0 6px;font-size:14px;display:flex;justify-content:space-between;gap:8px;align-items:center}
.badge{font-size:11px;font-weight:600;padding:1px 8px;border-radius:10px;background:#e6e8ee;color:#333;white-space:nowrap}
.done .badge{background:#dff3e0;color:var(--ok)}
.in-progress .badge{background:#fff0c2;color:var(--warn)}
.not-started{opacity:.8}
.failed{border:3px solid var(--fail);background:#fff6f6}
.failed .badge{background:var(--fail);color:#fff}
.error{margin:0 0 6px;padding:6px 8px;border-left:4px solid var(--fail);background:#fde8e8;color:#8e1b1b;font-weight:600;white-space:pre-wrap;word-break:break-word}
.prompt{margin:0 0 6px;white-space:pre-wrap;word-break:break-word}
dl{display:grid;grid-template-columns:auto 1fr;gap:0 10px;margin:0;font-size:12px;color:var(--muted)}
dt{font-weight:600}dd{margin:0;word-break:break-all}
.note{font-size:12px;color:var(--warn);margin:6px 0 0}
`;
