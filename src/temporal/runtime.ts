/** The Temporal Core runtime, installed once per process with a quiet logger (warnings and errors only). */
import { DefaultLogger, Runtime } from '@temporalio/worker';

let installed = false;

export function ensureRuntime(): void {
  if (installed) return;
  installed = true;
  try {
    Runtime.install({ logger: new DefaultLogger(process.env.I2V_TEMPORAL_LOG_LEVEL === 'debug' ? 'DEBUG' : 'WARN') });
  } catch {
    // Already installed by the embedding program (or a test harness): keep theirs.
  }
}
