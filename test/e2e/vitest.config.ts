import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// `npm run test:e2e`: real server processes against the Microsoft stand-in over HTTPS. One file
// at a time: each runs up to three servers, and the machine has two cores.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/e2e/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
})
