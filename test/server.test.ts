import { spawn, type ChildProcess } from 'node:child_process'
import { request } from 'node:http'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

const serverEntry = fileURLToPath(new URL('../src/server.ts', import.meta.url))
const dirs: string[] = []

interface Running {
  child: ChildProcess
  output: () => string
  baseUrl: string
  exited: Promise<number | null>
}

async function startServer(env: Record<string, string>): Promise<Running> {
  const child = spawn(process.execPath, [serverEntry], {
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout!.on('data', (chunk) => (output += chunk))
  child.stderr!.on('data', (chunk) => (output += chunk))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const baseUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 30_000)
    const check = () => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
      if (match) {
        clearTimeout(timer)
        resolve(match[1]!)
      }
    }
    child.stdout!.on('data', check)
    exited.then(() => {
      clearTimeout(timer)
      reject(new Error(`server exited:\n${output}`))
    })
  })
  return { child, output: () => output, baseUrl, exited }
}

async function runToExit(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [serverEntry], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  return { code, output }
}

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

describe('server process', () => {
  it('first start on an empty data dir: generates the secrets key (0600) and prints an admin key that works', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'mailgate-server-'))
    dirs.push(dataDir)
    const server = await startServer({ DATA_DIR: dataDir })
    try {
      const key = /^\s+(mgk_[A-Za-z0-9_-]{43})\s*$/m.exec(server.output())?.[1]
      expect(key, server.output()).toBeDefined()
      const keyFile = await stat(join(dataDir, 'secrets.key'))
      expect(keyFile.mode & 0o777).toBe(0o600)
      expect(server.output()).toMatch(/SECRETS_KEY is not set: generated a key/)

      const ready = await fetch(`${server.baseUrl}/health/ready`)
      expect(ready.status).toBe(200)
      const keys = await fetch(`${server.baseUrl}/v1/api-keys`, { headers: { authorization: `Bearer ${key}` } })
      expect(keys.status).toBe(200)
      const docs = await fetch(`${server.baseUrl}/docs/json`)
      expect(((await docs.json()) as any).openapi).toBe('3.1.0')
      // The key is printed for the operator, never written through the logger.
      const logLines = server.output().split('\n').filter((line) => line.startsWith('{'))
      expect(logLines.some((line) => line.includes(key!))).toBe(false)
      expect(logLines.some((line) => line.includes('"msg":"dispatcher started"'))).toBe(true)
    } finally {
      server.child.kill('SIGTERM')
    }
    expect(await server.exited).toBe(0)
    expect(server.output()).toMatch(/shutting down/)

    // A second start reuses the data: no new key is printed, the secrets key file is unchanged.
    const secretsBefore = await readFile(join(dataDir, 'secrets.key'), 'utf8')
    const again = await startServer({ DATA_DIR: dataDir })
    again.child.kill('SIGTERM')
    expect(await again.exited).toBe(0)
    expect(again.output()).not.toMatch(/mgk_/)
    expect(await readFile(join(dataDir, 'secrets.key'), 'utf8')).toBe(secretsBefore)
  })

  it('uses ADMIN_API_KEY as the first admin key when given', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'mailgate-server-'))
    dirs.push(dataDir)
    const adminKey = 'operator-chosen-admin-key-0123456789'
    const server = await startServer({ DATA_DIR: dataDir, ADMIN_API_KEY: adminKey, DISPATCHER_ENABLED: 'false' })
    try {
      expect(server.output()).not.toContain(adminKey)
      expect(server.output()).not.toContain('dispatcher started')
      const response = await fetch(`${server.baseUrl}/v1/api-keys`, { headers: { authorization: `Bearer ${adminKey}` } })
      expect(response.status).toBe(200)
      expect(((await response.json()) as any).items[0]).toMatchObject({ scopes: ['admin'], prefix: 'oper' })
    } finally {
      server.child.kill('SIGINT')
    }
    expect(await server.exited).toBe(0)
  })

  it('an invalid variable stops the process with a message naming it', async () => {
    const { code, output } = await runToExit({ PORT: 'eighty', LOG_LEVEL: 'loud' })
    expect(code).toBe(78)
    expect(output).toContain('PORT: expected an integer from 0 to 65535')
    expect(output).toContain('LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent')
  })

  it('an external database without SECRETS_KEY is refused before connecting', async () => {
    const { code, output } = await runToExit({ DATABASE_URL: 'postgres://127.0.0.1:1/none' })
    expect(code).toBe(78)
    expect(output).toMatch(/SECRETS_KEY: expected .* required with an external DATABASE_URL/)
  })
})

describe('graceful shutdown', () => {
  it('closing the app lets an in-flight request finish and turns new ones away', async () => {
    const { buildTestApp } = await import('./support/app.ts')
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const t = await buildTestApp({
      extend(app) {
        app.get('/slow', async () => {
          await gate
          return { finished: true }
        })
      },
    })
    const address = await t.app.listen({ port: 0, host: '127.0.0.1' })
    const inFlight = fetch(`${address}/slow`)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const closing = t.app.close()
    await new Promise((resolve) => setTimeout(resolve, 50))
    const refused = await new Promise<number | string>((resolve) => {
      request(`${address}/health/live`, { agent: false }, (response) => resolve(response.statusCode ?? 0))
        .on('error', () => resolve('refused'))
        .end()
    })
    expect([503, 'refused']).toContain(refused)
    release()
    const response = await inFlight
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ finished: true })
    await closing
    await t.db.drop()
  })
})
