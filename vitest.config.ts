import { defineConfig } from 'vitest/config';
import SummaryReporter from './test/support/summary-reporter.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Tests start real loopback servers; two cores here, so keep file parallelism modest.
    maxWorkers: 2,
    reporters: ['default', new SummaryReporter()],
  },
});
