import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Runs herald's conformance suites under vitest, as a vitest user would. Only the files here, so that
// node:test's files (test/*/*.test.ts, run by `npm test`) never run under vitest.
export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    include: ['test/vitest/*.vitest.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
