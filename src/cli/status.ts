/**
 * `i2v status`: what the task record says, plus live progress of episodes still running in Temporal.
 * `--json` gives the same data for scripts.
 */
import { formatMoney, roundMoney } from '../pricing';
import { taskKey } from '../runs/paths';
import { scanRun } from '../runs/scan';
import { readTaskRecord, type TaskRecordEntry } from '../runs/taskRecord';
import type { TemporalHandle } from '../temporal/connection';
import { episodeWorkflowId } from '../workflows/ids';
import { episodeProgressQuery } from '../workflows/messages';
import type { EpisodeProgress } from '../workflows/types';
import { formatProgressLine } from './progress';

export interface EpisodeStatus {
  episode: number;
  name: string;
  shots: number;
  done: number;
  failed: number;
  inProgress: number;
  notStarted: number;
  /** List-price spend recorded in tasks.json (every take). */
  spend: { amount: number; currency: string | null };
  failures: Array<{ key: string; take: number; code: string | null; message: string | null }>;
  /** Progress of the episode workflow, when one is running. */
  live: (EpisodeProgress & { elapsedMs: number }) | null;
}

export interface RunStatus {
  runId: string;
  runDir: string;
  episodes: EpisodeStatus[];
}

export async function collectStatus(runDir: string, temporal: TemporalHandle | undefined): Promise<RunStatus> {
  const plan = await scanRun(runDir);
  const records = await readTaskRecord(plan.runDir);
  const episodes: EpisodeStatus[] = [];
  for (const episode of plan.episodes) {
    const entries = episode.shots.map((s) => records[s.key]).filter((e): e is TaskRecordEntry => e !== undefined);
    const count = (f: (e: TaskRecordEntry) => boolean) => entries.filter(f).length;
    const takes = entries.flatMap((e) => e.takes ?? []);
    episodes.push({
      episode: episode.episode,
      name: episode.name,
      shots: episode.shots.length,
      done: count((e) => e.status === 'SUCCESS'),
      failed: count((e) => e.status === 'FAILED'),
      inProgress: count((e) => e.status !== 'SUCCESS' && e.status !== 'FAILED'),
      notStarted: episode.shots.length - entries.length,
      spend: { amount: roundMoney(takes.reduce((n, t) => n + (t.cost ?? 0), 0)), currency: takes.find((t) => t.currency)?.currency ?? null },
      failures: entries.filter((e) => e.status === 'FAILED').map((e) => ({ key: taskKey(e.episode, e.shot), take: e.take, code: e.error_code ?? null, message: e.error_message })),
      live: temporal ? await liveProgress(temporal, episodeWorkflowId(plan.runId, episode.episode)) : null,
    });
  }
  return { runId: plan.runId, runDir: plan.runDir, episodes };
}

export async function statusCommand(runDir: string, temporal: TemporalHandle | undefined, out: NodeJS.WritableStream = process.stdout, opts: { json: boolean } = { json: false }): Promise<void> {
  const status = await collectStatus(runDir, temporal);
  if (opts.json) {
    out.write(`${JSON.stringify(status, null, 2)}\n`);
    return;
  }
  out.write(`Run ${status.runId} (${status.runDir})\n`);
  for (const e of status.episodes) {
    const spend = e.spend.currency ? ` · spent ${formatMoney(e.spend.amount, e.spend.currency)}` : '';
    out.write(`${e.name}: ${e.shots} shots · ${e.done} done · ${e.failed} failed · ${e.inProgress} in progress · ${e.notStarted} not started${spend}\n`);
    for (const f of e.failures) out.write(`  ✗ ${f.key} take ${f.take}: [${f.code ?? 'error'}] ${f.message ?? ''}\n`);
    if (e.live) out.write(`  live: ${formatProgressLine(e.name, e.live, e.live.elapsedMs)}\n`);
  }
}

async function liveProgress(temporal: TemporalHandle, workflowId: string): Promise<(EpisodeProgress & { elapsedMs: number }) | null> {
  try {
    const handle = temporal.client.workflow.getHandle(workflowId);
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING') return null;
    return { ...(await handle.query(episodeProgressQuery)), elapsedMs: Date.now() - d.startTime.getTime() };
  } catch {
    // No workflow for this episode on this server: the task record is all there is.
    return null;
  }
}
