/**
 * Values read from the database, remembered for a short while so that a hot path (intake of
 * every received email) does not read the same configuration for every call. Every entry is
 * dropped `maxAgeMs` after the read that produced it started, so a change made by any
 * instance applies everywhere within that time; a change made by this instance clears the
 * cache at once. Callers asking for a key while it is being read share that read. A read
 * that started before the last clear() is returned to its callers but not remembered.
 */
/** How long intake remembers configuration (connectors, routes, blocked addresses) it read. */
export const CONFIG_CACHE_MAX_AGE_MS = 500

export class TtlCache<K, V> {
  private readonly entries = new Map<K, { value: V; readAt: number }>()
  private readonly reading = new Map<K, Promise<V>>()
  private clearedAt = -Infinity
  private readonly maxAgeMs: number
  private readonly maxEntries: number
  private readonly now: () => number

  constructor(maxAgeMs: number, maxEntries = 10_000, now: () => number = () => performance.now()) {
    this.maxAgeMs = maxAgeMs
    this.maxEntries = maxEntries
    this.now = now
  }

  async get(key: K, read: () => Promise<V>): Promise<V> {
    const entry = this.entries.get(key)
    if (entry && this.now() - entry.readAt < this.maxAgeMs) return entry.value
    if (entry) this.entries.delete(key)
    const pending = this.reading.get(key)
    if (pending) return pending
    const readAt = this.now()
    const settled = () => {
      // After a clear() another read of the key may be running: it is not this one's to end.
      if (this.reading.get(key) === promise) this.reading.delete(key)
    }
    const promise: Promise<V> = read().then(
      (value) => {
        settled()
        if (readAt > this.clearedAt) this.remember(key, value, readAt)
        return value
      },
      (error: unknown) => {
        settled()
        throw error
      },
    )
    this.reading.set(key, promise)
    return promise
  }

  clear(): void {
    this.clearedAt = this.now()
    this.entries.clear()
    this.reading.clear()
  }

  private remember(key: K, value: V, readAt: number): void {
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!)
    this.entries.set(key, { value, readAt })
  }
}
