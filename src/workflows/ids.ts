/**
 * Deterministic workflow ids: the same run folder, episode, shot and take always map to the same id, so
 * re-running a command re-attaches to existing work instead of duplicating it. Pure (used by workflows).
 */
export function episodeWorkflowId(runId: string, episode: number): string {
  return `i2v-${runId}-Episode-${pad(episode, 2)}`;
}

export function shotWorkflowId(runId: string, episode: number, shot: number, take: number): string {
  return `${episodeWorkflowId(runId, episode)}-Shot-${pad(shot, 3)}-take-${take}`;
}

/** Key of one paid submission in the submission journal: one per shot take. */
export function submissionKey(runId: string, episode: number, shot: number, take: number): string {
  return shotWorkflowId(runId, episode, shot, take);
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}
