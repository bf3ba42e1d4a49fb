/** `i2v status`: what the task record says, plus live progress of episodes still running in Temporal. */
import { scanRun } from '../runs/scan';
import { readTaskRecord, type TaskRecordEntry } from '../runs/taskRecord';
import type { TemporalHandle } from '../temporal/connection';
import { episodeWorkflowId } from '../workflows/ids';
import { episodeProgressQuery } from '../workflows/messages';
import { formatProgressLine } from './progress';

export async function statusCommand(runDir: string, temporal: TemporalHandle | undefined, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  const plan = await scanRun(runDir);
  const records = await readTaskRecord(plan.runDir);
  out.write(`Run ${plan.runId} (${plan.runDir})\n`);
  for (const episode of plan.episodes) {
    const entries = episode.shots.map((s) => records[s.key]);
    const count = (f: (e: TaskRecordEntry | undefined) => boolean) => entries.filter(f).length;
    out.write(
      `${episode.name}: ${episode.shots.length} shots · ${count((e) => e?.status === 'SUCCESS')} done · ` +
        `${count((e) => e?.status === 'FAILED')} failed · ${count((e) => !!e && e.status !== 'SUCCESS' && e.status !== 'FAILED')} in progress · ` +
        `${count((e) => !e)} not started\n`,
    );
    for (const shot of episode.shots) {
      const e = records[shot.key];
      if (e?.status === 'FAILED') out.write(`  ✗ ${shot.key} take ${e.take}: [${e.error_code ?? 'error'}] ${e.error_message ?? ''}\n`);
    }
    if (!temporal) continue;
    try {
      const handle = temporal.client.workflow.getHandle(episodeWorkflowId(plan.runId, episode.episode));
      const d = await handle.describe();
      if (d.status.name === 'RUNNING') out.write(`  live: ${formatProgressLine(episode.name, await handle.query(episodeProgressQuery), Date.now() - d.startTime.getTime())}\n`);
    } catch {
      // No workflow for this episode on this server: the task record is all there is.
    }
  }
}
