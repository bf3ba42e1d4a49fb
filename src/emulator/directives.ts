/**
 * Prompt directives: markers inside a shot's prompt that script the emulator's behaviour for that shot,
 * so end-to-end tests can make individual shots fail without touching server state. See server.ts.
 */
export interface PromptDirectives {
  /** `[emulator:reject=CODE]`: the submit itself fails with HTTP 400 and this code. */
  reject?: string;
  /** `[emulator:fail=CODE]`: the task is accepted, then ends FAILED with this code. */
  fail?: string;
  /** `[emulator:stuck]`: the task stays RUNNING forever. */
  stuck: boolean;
}

const REJECT = /\[emulator:reject=([A-Za-z0-9_.-]+)\]/;
const FAIL = /\[emulator:fail=([A-Za-z0-9_.-]+)\]/;

export function parseDirectives(prompt: string): PromptDirectives {
  const reject = REJECT.exec(prompt)?.[1];
  const fail = FAIL.exec(prompt)?.[1];
  const stuck = prompt.includes('[emulator:stuck]');
  return { ...(reject && { reject }), ...(fail && { fail }), stuck };
}

/** A plausible message for a directive-chosen error code. */
export function directiveMessage(code: string): string {
  return code.startsWith('DataInspectionFailed')
    ? 'Input data may contain inappropriate content.'
    : `${code} (requested by an emulator prompt directive).`;
}
