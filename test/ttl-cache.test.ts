import { describe, expect, it } from 'vitest'
import { ChangeSignal } from '../src/lib/change-signal.ts'
import { TtlCache } from '../src/lib/ttl-cache.ts'

function clock() {
  let now = 0
  return { now: () => now, advance: (ms: number) => (now += ms) }
}

function deferred<T>() {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((done) => (resolve = done))
  return { promise, resolve }
}

describe('TtlCache', () => {
  it('remembers a read until it is maxAgeMs old, counted from when the read started', async () => {
    const time = clock()
    const cache = new TtlCache<string, number>(500, 10, time.now)
    let reads = 0
    const read = async () => ++reads
    expect(await cache.get('a', read)).toBe(1)
    time.advance(499)
    expect(await cache.get('a', read)).toBe(1)
    time.advance(1)
    expect(await cache.get('a', read)).toBe(2)
  })

  it('callers asking while a read runs share it; a failed read is not remembered', async () => {
    const cache = new TtlCache<string, string>(500)
    const pending = deferred<string>()
    let reads = 0
    const first = cache.get('a', () => (reads++, pending.promise))
    const second = cache.get('a', () => (reads++, Promise.resolve('other')))
    pending.resolve('shared')
    expect(await Promise.all([first, second])).toEqual(['shared', 'shared'])
    expect(reads).toBe(1)
    await expect(cache.get('b', () => Promise.reject(new Error('down')))).rejects.toThrow('down')
    expect(await cache.get('b', async () => 'up')).toBe('up')
  })

  it('clear() drops everything, and a read that started before it is answered but not remembered', async () => {
    const time = clock()
    const cache = new TtlCache<string, string>(500, 10, time.now)
    expect(await cache.get('a', async () => 'old')).toBe('old')
    const pending = deferred<string>()
    const inFlight = cache.get('b', () => pending.promise)
    time.advance(1)
    cache.clear()
    expect(await cache.get('a', async () => 'new')).toBe('new')
    pending.resolve('read before the change')
    expect(await inFlight).toBe('read before the change')
    expect(await cache.get('b', async () => 'read after the change')).toBe('read after the change')
  })

  it('a read that started before clear() does not end the read that started after it', async () => {
    const cache = new TtlCache<string, string>(500)
    const before = deferred<string>()
    const after = deferred<string>()
    let reads = 0
    const first = cache.get('a', () => (reads++, before.promise))
    cache.clear()
    const second = cache.get('a', () => (reads++, after.promise))
    before.resolve('old')
    await first
    // Still reading after the clear: a third caller shares that read rather than starting one.
    const third = cache.get('a', () => (reads++, Promise.resolve('another')))
    after.resolve('new')
    expect(await Promise.all([second, third])).toEqual(['new', 'new'])
    expect(reads).toBe(2)
  })

  it('holds at most maxEntries, dropping the oldest', async () => {
    const cache = new TtlCache<number, number>(500, 2)
    let reads = 0
    for (const key of [1, 2, 3]) await cache.get(key, async () => (reads++, key))
    await cache.get(3, async () => (reads++, 3))
    await cache.get(2, async () => (reads++, 2))
    expect(reads).toBe(3)
    await cache.get(1, async () => (reads++, 1))
    expect(reads).toBe(4)
  })
})

describe('ChangeSignal', () => {
  it('a read made between a write and its commit (the old rows) is forgotten once the transaction ends', async () => {
    const changes = new ChangeSignal()
    const cache = new TtlCache<string, string>(500)
    changes.listen(() => cache.clear())
    let stored = 'enabled'
    const commit = deferred<void>()
    const transaction = changes.after(
      (async () => {
        changes.emit() // the repository, right after its statement
        await commit.promise
        stored = 'disabled'
      })(),
    )
    // Another request reads before the commit, and sees the old row.
    expect(await cache.get('connector', async () => stored)).toBe('enabled')
    commit.resolve()
    await transaction
    expect(await cache.get('connector', async () => stored)).toBe('disabled')
  })

  it('emits after a transaction that failed too', async () => {
    const changes = new ChangeSignal()
    let emitted = 0
    changes.listen(() => emitted++)
    await expect(changes.after(Promise.reject(new Error('rolled back')))).rejects.toThrow('rolled back')
    expect(emitted).toBe(1)
  })
})
