import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The fault-injection suite is long; it runs on its own (`npm run test:faults`).
    exclude: ['test/faults/**', 'node_modules/**'],
    // Temporal's native bridge and child processes are happier in forks than worker threads.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: run files two at a time so server start-up and ffmpeg don't starve each other.
    maxWorkers: 2,
  },
});
