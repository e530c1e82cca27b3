/**
 * npm run bench:startup — time from `npm start` to /health/ready = 200 on the embedded
 * database, first start (empty data dir: creates the database, migrates, makes keys) and
 * warm start, plus the server's resident memory after 5 s idle.
 */
import { execFileSync, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const PORT = 39_871

function descendants(pid: number): number[] {
  let out: string
  try {
    out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
  } catch {
    return []
  }
  const children = out.split('\n').map((s) => Number(s.trim())).filter(Boolean)
  return children.flatMap((child) => [child, ...descendants(child)])
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1])
  return kb / 1024
}

async function serverPid(npmPid: number): Promise<number> {
  for (const pid of descendants(npmPid)) {
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0')
    if (/(^|\/)node$/.test(argv[0] ?? '') && argv.some((arg) => /src\/server\.(ts|js)$/.test(arg))) return pid
  }
  throw new Error('server process not found')
}

async function measure(dataDir: string) {
  const started = performance.now()
  const child = spawn('npm', ['start', '--silent'], {
    cwd: root,
    env: { ...process.env, DATA_DIR: dataDir, PORT: String(PORT), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: 'ignore',
    detached: true,
  })
  let readyMs: number
  for (;;) {
    try {
      const response = await fetch(`http://127.0.0.1:${PORT}/health/ready`)
      if (response.status === 200) {
        readyMs = performance.now() - started
        break
      }
    } catch {
      // not listening yet
    }
    if (performance.now() - started > 60_000) throw new Error('not ready after 60 s')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const pid = await serverPid(child.pid!)
  await new Promise((resolve) => setTimeout(resolve, 5_000))
  const idleRss = await rssMiB(pid)
  process.kill(-child.pid!, 'SIGTERM')
  await new Promise((resolve) => child.on('exit', resolve))
  return { readyMs, idleRss }
}

const runs = Number(process.env.RUNS ?? 3)
const dataDir = await mkdtemp(join(tmpdir(), 'mailgate-bench-'))
try {
  const cold = await measure(dataDir)
  const warm = []
  for (let i = 0; i < runs; i++) warm.push(await measure(dataDir))
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
  console.log(`node ${process.version}, ${runs} warm runs`)
  console.log(`first start (empty data dir):  ready in ${cold.readyMs.toFixed(0)} ms, idle RSS ${cold.idleRss.toFixed(1)} MiB`)
  console.log(
    `warm start (median):           ready in ${median(warm.map((w) => w.readyMs)).toFixed(0)} ms, idle RSS ${median(warm.map((w) => w.idleRss)).toFixed(1)} MiB`,
  )
} finally {
  await rm(dataDir, { recursive: true, force: true })
}
