/**
 * `npm start`: compiles to dist/ when stale, then becomes the server process (execve, so no
 * parent process stays behind holding memory) with the production runtime settings below.
 * Extra arguments are Node options for the server, e.g. `npm start -- --inspect`.
 * docs/PERFORMANCE.md has the measurements behind each setting; the Dockerfile sets the same.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import './build-if-stale.ts'

/** A young generation of 8 MB rather than one sized from the machine's RAM. */
const NODE_FLAGS = ['--max-semi-space-size=8']
/**
 * glibc's allocator: two arenas instead of eight per core, and large blocks always mapped (so
 * freed ones go back to the system) instead of kept in the heap once the threshold drifts up.
 * An operator's own values win.
 */
const ALLOCATOR_ENV = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' }

const server = fileURLToPath(new URL('../../dist/src/server.js', import.meta.url))
const args = [...NODE_FLAGS, ...process.argv.slice(2), server]
const env = { ...ALLOCATOR_ENV, ...process.env }
if (process.execve) {
  process.execve(process.execPath, [process.execPath, ...args], env)
} else {
  // Windows has no execve: run the server as a child and pass signals and the exit code through.
  const child = spawn(process.execPath, args, { env, stdio: 'inherit' })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal))
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
}
