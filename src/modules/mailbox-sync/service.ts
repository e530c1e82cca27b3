import type { Db } from '../../database/index.ts'
import { NotFoundError } from '../../lib/errors.ts'
import type { FolderSyncRow, MailboxSyncRepository } from './repository.ts'
import type { ConnectorSync, FolderSyncState } from './schemas.ts'
import { ConnectorNotSyncedError } from './errors.ts'

export interface MailboxSyncServiceDeps {
  db: Db
  repository: MailboxSyncRepository
  connectors: { find(executor: Db, id: string): Promise<{ id: string; direction: string; enabled: boolean } | undefined> }
  clock?: () => Date
}

/**
 * Where each connector's folders stand, and the ways to start a sync: enabling a connector
 * (through the connectors module's port), and asking for one now.
 */
export class MailboxSyncService {
  private readonly deps: MailboxSyncServiceDeps
  private readonly wakeListeners: (() => void)[] = []

  constructor(deps: MailboxSyncServiceDeps) {
    this.deps = deps
  }

  private now(): Date {
    return this.deps.clock?.() ?? new Date()
  }

  /** Called when folders became due now (this instance's sync loop starts a round). */
  onWake(listener: () => void): void {
    this.wakeListeners.push(listener)
  }

  private woke(): void {
    for (const listener of this.wakeListeners) listener()
  }

  /**
   * The port connectors call when an incoming connector is enabled, in its transaction: its
   * folders (ids from its test) due now; mail received from now on is taken in, or from
   * `importSince` when the enable asked to import existing mail.
   */
  async startConnector(tx: Db, connectorId: string, folderIds: Record<string, string>, importSince?: Date): Promise<void> {
    await this.deps.repository.start(tx, connectorId, folderIds, this.now(), importSince)
  }

  /** After the enable committed: this instance syncs the new folders at once. */
  connectorStarted(): void {
    this.woke()
  }

  /** Makes every folder of the connector due now; answers with their states. */
  async syncNow(connectorId: string): Promise<ConnectorSync> {
    const { enabled } = await this.requireIncoming(connectorId)
    if (!enabled) {
      throw new ConnectorNotSyncedError(`Connector ${connectorId} is disabled: test and enable it, and its folders are synced.`, { connectorId, state: 'disabled' })
    }
    await this.deps.repository.wake(this.deps.db, connectorId, this.now())
    this.woke()
    return this.folderStates(connectorId, enabled)
  }

  /** Also for a disabled connector: where its folders were left, and the last error (why it was disabled). */
  async state(connectorId: string): Promise<ConnectorSync> {
    const { enabled } = await this.requireIncoming(connectorId)
    return this.folderStates(connectorId, enabled)
  }

  private async folderStates(connectorId: string, enabled: boolean): Promise<ConnectorSync> {
    const rows = await this.deps.repository.listForConnector(this.deps.db, connectorId)
    return { connectorId, enabled, folders: rows.map((row) => this.present(row, enabled)) }
  }

  private async requireIncoming(connectorId: string): Promise<{ enabled: boolean }> {
    const connector = await this.deps.connectors.find(this.deps.db, connectorId)
    if (!connector) throw new NotFoundError('connector', connectorId)
    if (connector.direction !== 'incoming') {
      throw new ConnectorNotSyncedError(`Connector ${connectorId} is an outgoing connector; only incoming connectors read their mailbox.`, { connectorId, state: 'outgoing' })
    }
    return connector
  }

  private present(row: FolderSyncRow, enabled: boolean): FolderSyncState {
    const now = this.now()
    return {
      folderPath: row.folderPath,
      ingestSince: row.ingestSince.toISOString(),
      lastSyncedAt: row.lastSyncedAt?.toISOString() ?? null,
      hasDeltaLink: row.deltaLink,
      roundInProgress: row.nextLink,
      pending: enabled && row.dueAt <= now,
      dueAt: row.dueAt.toISOString(),
      syncing: row.leaseExpiresAt !== null && row.leaseExpiresAt > now,
      messagesTaken: row.messagesTaken,
      messagesSkipped: row.messagesSkipped,
      lastSkipped: row.lastSkipped ?? null,
      lastError: row.lastError ?? null,
      subscriptionExpiresAt: row.subscriptionExpiresAt?.toISOString() ?? null,
    }
  }
}
