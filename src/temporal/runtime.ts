/** The Temporal Core runtime, installed once per process with a quiet logger and no signal handlers of its own. */
import { DefaultLogger, Runtime } from '@temporalio/worker';

let installed = false;

export function ensureRuntime(): void {
  if (installed) return;
  installed = true;
  try {
    Runtime.install({
      // Retried activity failures are expected here (throttling, transient errors) and are reported in the
      // shot results; the SDK's per-attempt warnings would only flood the terminal.
      logger: new DefaultLogger(process.env.I2V_TEMPORAL_LOG_LEVEL === 'debug' ? 'DEBUG' : 'ERROR'),
      // i2v handles SIGINT/SIGTERM itself (stop the worker first, then the embedded server).
      shutdownSignals: [],
    });
  } catch {
    // Already installed by the embedding program (or a test harness): keep theirs.
  }
}
