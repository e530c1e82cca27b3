/**
 * Tells this instance's caches that configuration changed, so they drop what they hold at
 * once. A repository emits it after each write, inside the transaction; `after` emits again
 * once the transaction has ended, so that a read made between the write and the commit
 * (which saw the old rows) is not kept either.
 */
export class ChangeSignal {
  private readonly listeners: (() => void)[] = []

  listen(listener: () => void): void {
    this.listeners.push(listener)
  }

  emit(): void {
    for (const listener of this.listeners) listener()
  }

  async after<T>(transaction: Promise<T>): Promise<T> {
    try {
      return await transaction
    } finally {
      this.emit()
    }
  }
}
