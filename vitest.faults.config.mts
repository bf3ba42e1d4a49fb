import { defineConfig } from 'vitest/config';

/** The fault-injection suite (`npm run test:faults`): real Temporal servers, worker processes and the emulator's faults. */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    // Temporal's native bridge, child processes and the Runtime (installed once per process) want a process per file.
    pool: 'forks',
    // Each test file's temporary folders are removed when it ends (test/helpers/scratch.ts).
    setupFiles: ['test/helpers/cleanup.ts'],
    // Two cores: one file at a time keeps kill timings and time-outs meaningful.
    maxWorkers: 1,
    testTimeout: 300_000,
    hookTimeout: 180_000,
  },
});
