/**
 * Deterministic workflow ids: the same run folder, episode, shot and take always map to the same id, so
 * re-running a command re-attaches to existing work instead of duplicating it. Pure (used by workflows).
 */
export function episodeWorkflowId(runId: string, episode: number): string {
  return `i2v-${runId}-Episode-${pad(episode, 2)}`;
}

export function shotWorkflowId(runId: string, episode: number, shot: number, take: number): string {
  return shotWorkflowIdFor(episodeWorkflowId(runId, episode), shot, take);
}

/** The id of a shot take's workflow, child of the given episode workflow. */
export function shotWorkflowIdFor(episodeId: string, shot: number, take: number): string {
  return `${episodeId}-Shot-${pad(shot, 3)}-take-${take}`;
}

/**
 * Key of one paid submission in the submission journal (which lives inside the run folder): one per shot take.
 * Independent of where the folder is, so a moved or renamed run still finds the tasks it already paid for.
 */
export function submissionKey(episode: number, shot: number, take: number): string {
  return `Episode-${pad(episode, 2)}-Shot-${pad(shot, 3)}-take-${take}`;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}
