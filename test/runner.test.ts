import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../src/logger.ts'
import { Housekeeping } from '../src/workers/housekeeping.ts'
import { BackgroundLoop, whileRenewing, WorkerMetrics, type LoopJob, type TaskPool } from '../src/workers/runner.ts'

const log = createLogger('silent')
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A job over a queue of keyed items that records what ran at once. */
function queueJob(items: string[], options: { workMs?: number; maxPerKey?: number; fail?: (item: string) => boolean } = {}) {
  const pending = [...items]
  const done: string[] = []
  let runningNow = 0
  let mostAtOnce = 0
  const job: LoopJob = {
    async round(pool: TaskPool) {
      let started = 0
      for (const item of [...pending]) {
        if (pool.capacity <= 0) break
        const key = item.split(':')[0]!
        if (pool.running(key) >= (options.maxPerKey ?? Infinity)) continue
        pending.splice(pending.indexOf(item), 1)
        started += 1
        pool.launch(key, async () => {
          runningNow += 1
          mostAtOnce = Math.max(mostAtOnce, runningNow)
          await sleep(options.workMs ?? 5)
          runningNow -= 1
          if (options.fail?.(item)) throw new Error(`${item} failed`)
          done.push(item)
        })
      }
      return { started }
    },
  }
  return { job, done, pending, mostAtOnce: () => mostAtOnce }
}

describe('BackgroundLoop', () => {
  it('runs at most maxConcurrent tasks and maxPerKey per key, and a finished task starts the next round at once', async () => {
    const items = ['a:1', 'a:2', 'a:3', 'b:1', 'b:2', 'c:1', 'c:2', 'c:3']
    const queue = queueJob(items, { workMs: 20, maxPerKey: 1 })
    const loop = new BackgroundLoop(queue.job, { name: 'test', pollMs: 60_000, maxConcurrent: 2, log })
    const started = Date.now()
    loop.start()
    while (queue.done.length < items.length && Date.now() - started < 5_000) await sleep(5)
    await loop.stop()
    expect([...queue.done].sort()).toEqual([...items].sort())
    expect(queue.mostAtOnce()).toBe(2)
    // With a 60 s poll, only wake-ups on completion can have finished 8 tasks this quickly.
    expect(Date.now() - started).toBeLessThan(2_000)
  })

  it('a task that ends quiet starts no round, unless the pool was full (work may be waiting for room)', async () => {
    let rounds = 0
    let launches = 0
    const loop = new BackgroundLoop(
      {
        round: async (pool) => {
          rounds += 1
          // Two launches in the first round fill the pool of 2; later rounds launch one more.
          const wanted = Math.min(rounds === 1 ? 2 : rounds === 2 ? 1 : 0, pool.capacity)
          for (let n = 0; n < wanted; n++) {
            launches += 1
            pool.launch(`k${launches}`, async () => {
              await sleep(10)
              return 'quiet' as const
            })
          }
          return { started: wanted }
        },
      },
      { name: 'quiet', pollMs: 60_000, maxConcurrent: 2, log },
    )
    loop.start()
    await sleep(200)
    await loop.stop()
    // Round 1 fills the pool; the first task to end found it full and woke round 2, which
    // filled it again; the second found it full too (round 3); the last ended with room to
    // spare and woke nothing (a task that is not quiet would have made a fourth round).
    expect({ rounds, launches }).toEqual({ rounds: 3, launches: 3 })
  })

  it('runOnce runs one thorough round and waits for what it started', async () => {
    let thorough: boolean | undefined
    const queue = queueJob(['x:1', 'y:1', 'z:1'], { workMs: 30 })
    const loop = new BackgroundLoop(
      {
        round: async (pool, options) => {
          thorough = options.thorough
          return queue.job.round(pool, options)
        },
      },
      { name: 'test', pollMs: 1_000, maxConcurrent: 2, log },
    )
    expect(await loop.runOnce()).toBe(2)
    expect(thorough).toBe(true)
    expect(queue.done).toHaveLength(2)
  })

  it('a failing round is counted and retried; a failing task is counted and does not stop the loop', async () => {
    const registry = new Registry()
    const metrics = new WorkerMetrics(registry)
    let rounds = 0
    const queue = queueJob(['a:1', 'a:2'], { fail: (item) => item === 'a:1' })
    const loop = new BackgroundLoop(
      {
        round: async (pool, options) => {
          rounds += 1
          if (rounds === 1) throw new Error('database away')
          return queue.job.round(pool, options)
        },
      },
      { name: 'flaky', pollMs: 10, maxConcurrent: 4, log, metrics },
    )
    loop.start()
    const started = Date.now()
    while (queue.done.length < 1 && Date.now() - started < 5_000) await sleep(5)
    await loop.stop()
    expect(queue.done).toEqual(['a:2'])
    const text = await registry.metrics()
    expect(text).toContain('mailgate_worker_round_failures_total{worker="flaky"} 1')
    expect(text).toContain('mailgate_worker_tasks_total{worker="flaky",outcome="failed"} 1')
    expect(text).toContain('mailgate_worker_tasks_total{worker="flaky",outcome="done"} 1')
    expect(text).toContain('mailgate_worker_tasks_active{worker="flaky"} 0')
  })

  it('stop waits for running tasks up to the grace period, and no longer', async () => {
    const slow = queueJob(['s:1'], { workMs: 300 })
    const loop = new BackgroundLoop(slow.job, { name: 'slow', pollMs: 1_000, maxConcurrent: 1, log })
    loop.start()
    await sleep(20)
    let began = Date.now()
    await loop.stop(50)
    expect(Date.now() - began).toBeLessThan(250)
    expect(slow.done).toEqual([])

    const graceful = queueJob(['g:1'], { workMs: 100 })
    const second = new BackgroundLoop(graceful.job, { name: 'graceful', pollMs: 1_000, maxConcurrent: 1, log })
    second.start()
    await sleep(20)
    began = Date.now()
    await second.stop(5_000)
    expect(graceful.done).toEqual(['g:1'])
    expect(Date.now() - began).toBeLessThan(1_000)
  })
})

describe('whileRenewing', () => {
  it('renews while the work runs, and stops renewing when it ends, even when it throws', async () => {
    let renewals = 0
    await expect(
      whileRenewing(async () => (renewals += 1), 10, async () => {
        await sleep(55)
        throw new Error('send failed')
      }),
    ).rejects.toThrow('send failed')
    const after = renewals
    expect(after).toBeGreaterThanOrEqual(3)
    await sleep(40)
    expect(renewals).toBe(after)
  })
})

describe('Housekeeping', () => {
  it('runs every chore with the same clock and reports what each removed', async () => {
    const housekeeping = new Housekeeping(log)
    const seen: Date[] = []
    housekeeping.add('blobs', async (now) => (seen.push(now), 2))
    housekeeping.add('keys', async (now) => (seen.push(now), 0))
    const now = new Date('2030-01-01T00:00:00Z')
    expect(await housekeeping.run(now)).toEqual({ blobs: 2, keys: 0 })
    expect(seen).toEqual([now, now])
  })
})
