import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { and, eq, lt, or, sql } from 'drizzle-orm'
import { connectors, graphSubscriptions, mailboxFolderSyncs } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { MailboxError } from '../../graph/errors.ts'
import type { MailboxClient } from '../../graph/mailbox-client.ts'
import { newId } from '../../lib/ids.ts'
import type { SecretBox } from '../../lib/secret-box.ts'
import { idIn, textArrayLiteral } from '../../database/id-in.ts'
import type { ClaimedFolder } from './repository.ts'

const TRANSIENT = new Set(['THROTTLED', 'GRAPH_UNAVAILABLE', 'NETWORK_ERROR', 'GRAPH_TIMEOUT', 'TLS_UNTRUSTED', 'REQUEST_SLOTS_UNAVAILABLE'])

/** Outlook message subscriptions live at most 4,230 minutes; a little less is asked for. */
const LIFETIME_MS = 4_200 * 60_000
/** Renewed once less than this is left, well before Graph drops it. */
const RENEW_BEFORE_MS = 24 * 3_600_000

export interface SubscriptionsDeps {
  db: Db
  secretBox: SecretBox
  /** PUBLIC_BASE_URL: where Graph reaches /v1/graph/notifications and /v1/graph/lifecycle (needed to subscribe). */
  publicBaseUrl?: string
  clock?: () => Date
}

/** A notification item as far as checking it goes. */
export interface NotificationItem {
  subscriptionId: string
  clientState: string
}

function isCurrent(subscription: { expiresAt: Date; renewRequested: boolean } | null | undefined, now: Date): boolean {
  return !!subscription && !subscription.renewRequested && subscription.expiresAt.getTime() - now.getTime() > RENEW_BEFORE_MS
}

function sealContext(connectorId: string, folderPath: string): string {
  return `graph-subscription:${connectorId}:${folderPath}`
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

/**
 * Change-notification subscriptions of synced folders: created on a folder's first turn,
 * renewed well before they expire (or when Graph asks), and deleted at Graph once their
 * connector is disabled or deleted or the folder is no longer read. Notifications are only
 * believed with the subscription's clientState, compared in constant time, and only wake the
 * folder: what is new is read through delta.
 */
export class FolderSubscriptions {
  private readonly deps: SubscriptionsDeps

  constructor(deps: SubscriptionsDeps) {
    this.deps = deps
  }

  private now(): Date {
    return this.deps.clock?.() ?? new Date()
  }

  /**
   * During a folder's turn: its subscription exists and is far from expiry. What the claim
   * read of it decides whether anything is to be done; most turns have nothing to do.
   */
  async ensure(folder: ClaimedFolder, client: MailboxClient): Promise<void> {
    const now = this.now()
    if (isCurrent(folder.subscription, now)) return
    const { db } = this.deps
    const [row] = await db
      .select({ id: graphSubscriptions.id, subscriptionId: graphSubscriptions.subscriptionId, expiresAt: graphSubscriptions.expiresAt, renewRequested: graphSubscriptions.renewRequested })
      .from(graphSubscriptions)
      .where(and(eq(graphSubscriptions.connectorId, folder.connectorId), eq(graphSubscriptions.folderPath, folder.folderPath)))
    if (row && isCurrent(row, now)) return
    if (row) {
      try {
        const expiresAt = await client.renewSubscription(row.subscriptionId, new Date(now.getTime() + LIFETIME_MS))
        await db.update(graphSubscriptions).set({ expiresAt, renewRequested: false, renewedAt: now }).where(eq(graphSubscriptions.id, row.id))
        return
      } catch (error) {
        // Graph no longer has it (expired, removed): a new one replaces it.
        if (!(error instanceof MailboxError && error.status === 404)) throw error
        await db.delete(graphSubscriptions).where(eq(graphSubscriptions.id, row.id))
      }
    }
    const base = this.deps.publicBaseUrl
    if (!base) return
    const clientState = randomBytes(32).toString('base64url')
    const created = await client.createSubscription({
      mailbox: folder.mailbox,
      folderId: folder.folderId,
      notificationUrl: `${base}/v1/graph/notifications`,
      lifecycleNotificationUrl: `${base}/v1/graph/lifecycle`,
      clientState,
      expiresAt: new Date(now.getTime() + LIFETIME_MS),
    })
    await db
      .insert(graphSubscriptions)
      .values({
        id: newId(),
        subscriptionId: created.id,
        connectorId: folder.connectorId,
        folderPath: folder.folderPath,
        integrationId: folder.integrationId,
        mailbox: folder.mailbox,
        clientStateSealed: this.deps.secretBox.seal(clientState, sealContext(folder.connectorId, folder.folderPath)),
        expiresAt: created.expiresAt,
      })
      .onConflictDoUpdate({
        target: [graphSubscriptions.connectorId, graphSubscriptions.folderPath],
        set: { subscriptionId: created.id, clientStateSealed: this.deps.secretBox.seal(clientState, sealContext(folder.connectorId, folder.folderPath)), expiresAt: created.expiresAt, renewRequested: false },
      })
  }

  /**
   * The items whose subscription is ours and whose clientState matches (compared in constant
   * time), with the folder each one is for; the others are not believed.
   */
  async verify(items: NotificationItem[]): Promise<{ item: NotificationItem; connectorId: string; folderPath: string }[]> {
    const ids = [...new Set(items.map((item) => item.subscriptionId))]
    if (ids.length === 0) return []
    const rows = await this.deps.db
      .select({ subscriptionId: graphSubscriptions.subscriptionId, connectorId: graphSubscriptions.connectorId, folderPath: graphSubscriptions.folderPath, sealed: graphSubscriptions.clientStateSealed })
      .from(graphSubscriptions)
      .where(sql`${graphSubscriptions.subscriptionId} = any(${textArrayLiteral(ids)}::text[])`)
    const known = new Map<string, { connectorId: string; folderPath: string; expected: Buffer }>()
    for (const row of rows) {
      const expected = this.expectedState(row.sealed, row.connectorId, row.folderPath)
      if (expected) known.set(row.subscriptionId, { connectorId: row.connectorId, folderPath: row.folderPath, expected })
    }
    const believed: { item: NotificationItem; connectorId: string; folderPath: string }[] = []
    for (const item of items) {
      const subscription = known.get(item.subscriptionId)
      if (subscription && timingSafeEqual(digest(item.clientState), subscription.expected)) {
        believed.push({ item, connectorId: subscription.connectorId, folderPath: subscription.folderPath })
      }
    }
    return believed
  }

  /** The digest of the stored clientState; undefined when no configured key opens it (nothing is believed). */
  private expectedState(sealed: string, connectorId: string, folderPath: string): Buffer | undefined {
    try {
      return digest(this.deps.secretBox.open(sealed, sealContext(connectorId, folderPath)))
    } catch {
      return undefined
    }
  }

  /** Graph asked for reauthorization: renewed on the folder's next turn. */
  async requestRenewal(subscriptionId: string): Promise<void> {
    await this.deps.db.update(graphSubscriptions).set({ renewRequested: true }).where(eq(graphSubscriptions.subscriptionId, subscriptionId))
  }

  /** Graph removed it: a new one is made on the folder's next turn. */
  async forget(subscriptionId: string): Promise<void> {
    await this.deps.db.delete(graphSubscriptions).where(eq(graphSubscriptions.subscriptionId, subscriptionId))
  }

  /**
   * Deletes at Graph (then here) the subscriptions of folders no longer synced: connector
   * disabled or deleted, folder no longer read; and forgets expired ones.
   */
  async cleanUp(open: (integrationId: string) => Promise<{ client: MailboxClient }>): Promise<number> {
    const { db } = this.deps
    const stale = await db
      .select({ id: graphSubscriptions.id, subscriptionId: graphSubscriptions.subscriptionId, integrationId: graphSubscriptions.integrationId })
      .from(graphSubscriptions)
      .leftJoin(connectors, eq(connectors.id, graphSubscriptions.connectorId))
      .leftJoin(mailboxFolderSyncs, and(eq(mailboxFolderSyncs.connectorId, graphSubscriptions.connectorId), eq(mailboxFolderSyncs.folderPath, graphSubscriptions.folderPath)))
      .where(or(sql`${connectors.id} is null`, eq(connectors.enabled, false), sql`${mailboxFolderSyncs.id} is null`, lt(graphSubscriptions.expiresAt, this.now())))
      .limit(100)
    let removed = 0
    for (const row of stale) {
      try {
        const { client } = await open(row.integrationId)
        await client.deleteSubscription(row.subscriptionId)
      } catch (error) {
        // A passing failure: tried again later. Anything else (gone at Graph, integration
        // deleted or refused): forgotten here; Graph drops it within days by itself.
        if (error instanceof MailboxError && TRANSIENT.has(error.code)) continue
      }
      await db.delete(graphSubscriptions).where(idIn(graphSubscriptions.id, [row.id]))
      removed++
    }
    return removed
  }
}
