/**
 * Run by `npm start` before the server: the server runs compiled (dist/), because loading
 * TypeScript through Node's type stripping keeps its WebAssembly transformer resident, memory
 * the running service should not carry. Compiles first when dist/ is missing or older than
 * anything it is built from, so `npm ci && npm start` works on a fresh machine.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const dist = join(root, 'dist')
const stamp = join(dist, '.built')
const sources = ['src', 'db', 'schema', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']

function newestChange(path: string): number {
  const stats = statSync(path)
  if (!stats.isDirectory()) return stats.mtimeMs
  return Math.max(stats.mtimeMs, ...readdirSync(path).map((entry) => newestChange(join(path, entry))))
}

const built = existsSync(stamp) ? statSync(stamp).mtimeMs : 0
const changed = Math.max(...sources.map((source) => join(root, source)).filter(existsSync).map(newestChange))
if (changed > built) {
  process.stderr.write('mailgate: compiling to dist/ (first start, or the sources changed)\n')
  rmSync(dist, { recursive: true, force: true })
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' })
  writeFileSync(stamp, '')
}
