import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The fault-injection suite is long; it runs on its own (`npm run test:faults`).
    exclude: ['test/faults/**', 'node_modules/**'],
    // Temporal's native bridge and child processes are happier in forks than worker threads.
    pool: 'forks',
    // Each test file's temporary folders are removed when it ends (test/helpers/scratch.ts).
    setupFiles: ['test/helpers/cleanup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: run files two at a time so server start-up and ffmpeg don't starve each other.
    maxWorkers: 2,
  },
});
