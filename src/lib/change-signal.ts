/** Tells this instance's caches that a repository wrote, so they drop what they hold at once. */
export class ChangeSignal {
  private readonly listeners: (() => void)[] = []

  listen(listener: () => void): void {
    this.listeners.push(listener)
  }

  emit(): void {
    for (const listener of this.listeners) listener()
  }
}
