import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const SERVER_ENTRY = fileURLToPath(new URL('../server.ts', import.meta.url))

export interface MailgateProcessOptions {
  port: number
  /** The whole environment the server gets (PORT and HOST are added): nothing is inherited. */
  env: Record<string, string>
  /** Its stdout and stderr, appended across restarts. */
  logPath: string
  /** In its own process group, so that a Ctrl-C in a terminal reaches only the parent. */
  detached?: boolean
}

/**
 * One Mailgate server (src/server.ts) as a child process, as an operator runs it: started,
 * waited for until ready, stopped with SIGTERM, or killed with SIGKILL and started again
 * on the same database.
 */
export class MailgateProcess {
  readonly url: string
  private child: ChildProcess | undefined
  private exited: Promise<void> = Promise.resolve()
  /** Why the last start failed to make a process at all (node not found, ...). */
  private spawnError: Error | undefined
  /** Times the process was started. */
  starts = 0

  private readonly options: MailgateProcessOptions

  constructor(options: MailgateProcessOptions) {
    this.options = options
    this.url = `http://127.0.0.1:${options.port}`
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** Starts the server; `onExit` hears of every exit (including the ones asked for). */
  start(onExit?: (code: number | null, signal: NodeJS.Signals | null) => void): void {
    if (this.running) throw new Error(`Mailgate on port ${this.options.port} is already running`)
    const log = openSync(this.options.logPath, 'a')
    const child = spawn(process.execPath, [SERVER_ENTRY], {
      detached: this.options.detached ?? false,
      env: { ...this.options.env, HOST: '127.0.0.1', PORT: String(this.options.port) },
      stdio: ['ignore', log, log],
    })
    closeSync(log)
    this.spawnError = undefined
    child.once('error', (error) => (this.spawnError = error))
    this.child = child
    this.starts++
    // However the parent ends (a test runner killing its worker), no server outlives it.
    const orphaned = () => child.kill('SIGKILL')
    process.once('exit', orphaned)
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        process.removeListener('exit', orphaned)
        onExit?.(code, signal)
        resolve()
      }),
    )
  }

  /** Waits until /health/ready answers 200; throws (with the log's end) if the process exits or time runs out. */
  async ready(timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (this.spawnError) throw new Error(`Mailgate could not be started: ${this.spawnError.message}`)
      if (!this.running) throw new Error(`Mailgate on port ${this.options.port} exited before it was ready; its log ends:\n${this.logTail()}`)
      const ready = await fetch(`${this.url}/health/ready`, { signal: AbortSignal.timeout(5_000) }).then((response) => response.ok, () => false)
      if (ready) return
      if (Date.now() > deadline) throw new Error(`Mailgate on port ${this.options.port} was not ready within ${timeoutMs} ms; its log ends:\n${this.logTail()}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }

  /** SIGKILL: no shutdown code runs, as in a power cut or the OOM killer. */
  async kill(): Promise<void> {
    if (this.running) this.child!.kill('SIGKILL')
    await this.exited
  }

  /** SIGTERM (a graceful stop), then SIGKILL if it is still running after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.running) {
      this.child!.kill('SIGTERM')
      const forced = setTimeout(() => this.child?.kill('SIGKILL'), graceMs)
      await this.exited
      clearTimeout(forced)
    }
    await this.exited
  }

  /** Its whole log so far. */
  log(): string {
    try {
      return readFileSync(this.options.logPath, 'utf8')
    } catch {
      return ''
    }
  }

  /** The last lines of its log, for an error message. */
  logTail(lines = 40): string {
    try {
      return readFileSync(this.options.logPath, 'utf8').split('\n').slice(-lines).join('\n')
    } catch {
      return '(no log)'
    }
  }
}
