/**
 * The Temporal Core runtime, installed once per process: a quiet logger (or JSON lines), no signal handlers of
 * its own (i2v stops its workers first, then the embedded server), and optionally a Prometheus endpoint that
 * serves Temporal's own metrics and ours (recorded through the SDK's metric meter, see src/metrics.ts).
 */
import { DefaultLogger, Runtime, type LogEntry, type LogLevel } from '@temporalio/worker';

export interface RuntimeOptions {
  /** Serve Prometheus metrics on this port (all interfaces). */
  metricsPort?: number;
  /** 'json': one JSON object per log line, for log collectors. */
  logFormat?: 'text' | 'json';
}

let installed = false;

export function ensureRuntime(opts: RuntimeOptions = {}): void {
  if (installed) return;
  installed = true;
  // Retried activity failures are expected here (throttling, transient errors) and are reported in the shot
  // results; the SDK's per-attempt warnings would only flood the terminal.
  const level: LogLevel = process.env.I2V_TEMPORAL_LOG_LEVEL === 'debug' ? 'DEBUG' : opts.logFormat === 'json' ? 'WARN' : 'ERROR';
  try {
    Runtime.install({
      logger: opts.logFormat === 'json' ? new DefaultLogger(level, writeJsonLog) : new DefaultLogger(level),
      shutdownSignals: [],
      ...(opts.metricsPort ? { telemetryOptions: { metrics: { prometheus: { bindAddress: `0.0.0.0:${opts.metricsPort}` } } } } : {}),
    });
  } catch {
    // Already installed by the embedding program (or a test harness): keep theirs.
  }
}

function writeJsonLog(entry: LogEntry): void {
  const { level, message, meta } = entry;
  process.stderr.write(`${JSON.stringify({ time: new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString(), level, message, ...meta })}\n`);
}
