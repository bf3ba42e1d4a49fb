/**
 * The task state machine. A task's status is a pure function of its record and the clock:
 * PENDING for pendingMs, then RUNNING for runningMs, then its outcome. A successful task additionally
 * waits for its MP4 to finish rendering, so SUCCEEDED always comes with a servable video.
 */
import type { Resolution } from '../provider/types';

export type TaskOutcome = { kind: 'succeed' } | { kind: 'fail'; code: string; message: string } | { kind: 'stuck' };

export interface RenderedVideo {
  path: string;
  bytes: number;
}

type RenderState =
  | { state: 'rendering' }
  | { state: 'done'; at: number; video: RenderedVideo }
  | { state: 'failed'; at: number; code: string; message: string };

export interface Task {
  id: string;
  submittedAt: number;
  /** When it leaves PENDING. */
  scheduledAt: number;
  /** The earliest moment it may reach a terminal status. */
  dueAt: number;
  outcome: TaskOutcome;
  prompt: string;
  actualPrompt: string;
  resolution: Resolution;
  videoSeconds: number;
  render: RenderState;
}

export type TaskView =
  | { status: 'UNKNOWN' }
  | { status: 'PENDING' | 'RUNNING'; task: Task }
  | { status: 'SUCCEEDED'; task: Task; endAt: number; video: RenderedVideo }
  | { status: 'FAILED'; task: Task; endAt: number; code: string; message: string };

export interface NewTask {
  id: string;
  outcome: TaskOutcome;
  prompt: string;
  actualPrompt: string;
  resolution: Resolution;
  videoSeconds: number;
}

export interface TaskTimings {
  pendingMs: number;
  runningMs: number;
  /** Each task stays RUNNING for runningMs plus a random extra below this (0: every task takes runningMs). */
  runningJitterMs?: number;
  /** In [0, 1); Math.random unless a test wants a reproducible sequence. */
  random?: () => number;
  /** Draws each task's RUNNING time in ms, instead of runningMs plus jitter (e.g. a realistic distribution for a benchmark). */
  runningMsSampler?: () => number;
  /** After this long from submission a task id reads as UNKNOWN, as after 24 h on the real service. */
  ttlMs: number;
}

export function taskStatusAt(task: Task | undefined, now: number, ttlMs: number): TaskView {
  if (!task || now - task.submittedAt >= ttlMs) return { status: 'UNKNOWN' };
  if (now < task.scheduledAt) return { status: 'PENDING', task };
  const { outcome, render } = task;
  if (outcome.kind === 'stuck' || now < task.dueAt) return { status: 'RUNNING', task };
  if (outcome.kind === 'fail') return { status: 'FAILED', task, endAt: task.dueAt, code: outcome.code, message: outcome.message };
  if (render.state === 'rendering') return { status: 'RUNNING', task };
  const endAt = Math.max(task.dueAt, render.at);
  return render.state === 'done'
    ? { status: 'SUCCEEDED', task, endAt, video: render.video }
    : { status: 'FAILED', task, endAt, code: render.code, message: render.message };
}

export class TaskStore {
  private readonly tasks = new Map<string, Task>();

  constructor(
    private readonly clock: () => number,
    private readonly timings: TaskTimings,
  ) {}

  create(init: NewTask): Task {
    const submittedAt = this.clock();
    const { pendingMs, runningMs, runningJitterMs = 0, random = Math.random, runningMsSampler } = this.timings;
    const scheduledAt = submittedAt + pendingMs;
    const dueAt = scheduledAt + (runningMsSampler ? Math.max(0, Math.round(runningMsSampler())) : runningMs + Math.floor(random() * runningJitterMs));
    const task: Task = { ...init, submittedAt, scheduledAt, dueAt, render: { state: 'rendering' } };
    this.tasks.set(task.id, task);
    return task;
  }

  get(id: string): Task | undefined {
    return this.tasks.get(id);
  }

  view(id: string): TaskView {
    return taskStatusAt(this.tasks.get(id), this.clock(), this.timings.ttlMs);
  }

  renderDone(id: string, video: RenderedVideo): void {
    const task = this.tasks.get(id);
    if (task) task.render = { state: 'done', at: this.clock(), video };
  }

  renderFailed(id: string, code: string, message: string): void {
    const task = this.tasks.get(id);
    if (task) task.render = { state: 'failed', at: this.clock(), code, message };
  }
}
