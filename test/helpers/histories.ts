/** Saves workflow histories as replay fixtures when RECORD_HISTORIES=1 (see `npm run record-histories`). */
import { writeFile, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';

export const HISTORY_FIXTURES = path.join(__dirname, '..', 'fixtures', 'histories');

/** Histories are stored as binary protobuf: the server's own format, stable across SDK versions. */
export async function maybeRecordHistory(name: string, handle: WorkflowHandle): Promise<void> {
  if (process.env.RECORD_HISTORIES !== '1') return;
  const history = await handle.fetchHistory();
  await mkdir(HISTORY_FIXTURES, { recursive: true });
  await writeFile(path.join(HISTORY_FIXTURES, `${name}.binpb`), temporal.api.history.v1.History.encode(history).finish());
}

export async function loadHistory(file: string): Promise<temporal.api.history.v1.History> {
  return temporal.api.history.v1.History.decode(await readFile(path.join(HISTORY_FIXTURES, file)));
}

/** The activity types a workflow scheduled, in order. */
export function activitiesScheduled(history: temporal.api.history.v1.IHistory): string[] {
  return (history.events ?? []).flatMap((e) => {
    const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
    return name ? [name] : [];
  });
}

/** The ids of the patch markers a workflow recorded (`patched()`), in order. */
export function patchMarkers(history: temporal.api.history.v1.IHistory): string[] {
  return (history.events ?? []).flatMap((e) => {
    const marker = e.markerRecordedEventAttributes;
    const data = marker?.markerName === 'core_patch' ? marker.details?.['patch-data']?.payloads?.[0]?.data : undefined;
    return data ? [(JSON.parse(Buffer.from(data).toString()) as { id: string }).id] : [];
  });
}

/** How many times a workflow set a search attribute (each is a write to the server's visibility store). */
export function searchAttributeUpserts(history: temporal.api.history.v1.IHistory, key: string): number {
  return (history.events ?? []).filter((e) => e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.[key]).length;
}
