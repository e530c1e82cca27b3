/**
 * What authentication learned of a key, remembered for a short while so that a busy client
 * does not cost a database read per request. Every entry is dropped KEY_CACHE_MAX_AGE_MS after it was
 * read, so a key revoked by any instance stops working everywhere within that time; a revoke
 * on this instance clears it at once. Misses (unknown keys) are never remembered, so guessing
 * keys cannot fill it.
 */
export interface CachedKey {
  id: string
  name: string
  scopes: string[]
  revokedAt: Date | null
  lastUsedAt: Date | null
}

export const KEY_CACHE_MAX_AGE_MS = 500
const MAX_ENTRIES = 10_000

export class KeyCache {
  private readonly entries = new Map<string, { key: CachedKey; readAt: number }>()
  private readonly now: () => number
  private clearedAt = -Infinity

  constructor(now: () => number = () => performance.now()) {
    this.now = now
  }

  get(keyHash: string): CachedKey | undefined {
    const entry = this.entries.get(keyHash)
    if (!entry) return undefined
    if (this.now() - entry.readAt >= KEY_CACHE_MAX_AGE_MS) {
      this.entries.delete(keyHash)
      return undefined
    }
    return entry.key
  }

  /**
   * `readAt` is when the read that found the key started: the age counts from there, and a
   * read that started before the last clear() may have seen the key before its revocation.
   */
  set(keyHash: string, key: CachedKey, readAt: number): void {
    if (readAt <= this.clearedAt) return
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!)
    this.entries.delete(keyHash)
    this.entries.set(keyHash, { key, readAt })
  }

  startOfRead(): number {
    return this.now()
  }

  clear(): void {
    this.clearedAt = this.now()
    this.entries.clear()
  }
}
