import { and, asc, eq, isNotNull, sql } from 'drizzle-orm'
import type { PgUpdateSetSource } from 'drizzle-orm/pg-core'
import { connectors, graphSubscriptions, mailboxFolderSyncs, type SkippedMessage, type SyncError } from '../../../db/schema.ts'
import { rowsOf, type Db } from '../../database/index.ts'
import { newId } from '../../lib/ids.ts'
import { heldByAny, RELEASED } from '../../workers/liveness.ts'

/** What the state of a folder's sync shows. */
export interface FolderSyncRow {
  folderPath: string
  ingestSince: Date
  lastSyncedAt: Date | null
  deltaLink: boolean
  nextLink: boolean
  dueAt: Date
  leaseExpiresAt: Date | null
  messagesTaken: number
  messagesSkipped: number
  lastSkipped: SkippedMessage | null
  lastError: SyncError | null
  subscriptionExpiresAt: Date | null
}

/** A folder this instance holds the lease of, with what syncing it needs of its connector. */
export interface ClaimedFolder {
  id: string
  connectorId: string
  folderPath: string
  folderId: string
  ingestSince: Date
  deltaLink: string | null
  nextLink: string | null
  fence: number
  integrationId: string
  mailbox: string
  afterProcessing: string | null
  /**
   * The connector had failures in a row when claimed, and no other folder of it is gone: a
   * success resets them. (A folder that reads fine must not keep resetting the failures of a
   * sibling folder that was deleted, or that connector is never disabled.)
   */
  resetsFailures: boolean
  /** When the claim made the folder due next: a turn that leaves it so needs no extra round. */
  claimedDueAt: Date
  /** The folder's change-notification subscription as claimed, if it has one. */
  subscription: { expiresAt: Date; renewRequested: boolean } | null
}

export class MailboxSyncRepository {
  /**
   * Folder rows for every enabled incoming connector's configured folders (mail received from
   * now on), and none for folders no longer configured: what enabling, re-testing and editing
   * connectors leave to the sync. Returns how many rows it added or removed.
   */
  async reconcile(executor: Db, now: Date): Promise<number> {
    const missing = rowsOf<{ connector_id: string; folder_path: string; folder_id: string }>(
      await executor.execute(sql`
        select c.id as connector_id, f.key as folder_path, f.value as folder_id
        from ${connectors} c, jsonb_each_text(c.folder_ids) f
        where c.direction = 'incoming' and c.enabled and c.folder_ids is not null and f.key = any(c.folder_paths)
          and not exists (select 1 from ${mailboxFolderSyncs} s where s.connector_id = c.id and s.folder_path = f.key)`),
    )
    let added = 0
    if (missing.length > 0) {
      const values = missing.map((row) => ({ id: newId(), connectorId: row.connector_id, folderPath: row.folder_path, folderId: row.folder_id, ingestSince: now, dueAt: now }))
      added = (await executor.insert(mailboxFolderSyncs).values(values).onConflictDoNothing().returning({ id: mailboxFolderSyncs.id })).length
    }
    // Only the folders read (folder_ids also holds a move target of after-processing).
    const removed = await executor.execute(sql`
      delete from ${mailboxFolderSyncs} s
      where not exists (
        select 1 from ${connectors} c
        where c.id = s.connector_id and c.direction = 'incoming' and c.folder_ids ? s.folder_path and s.folder_path = any(c.folder_paths)
      )
      returning id`)
    // A folder the connector's latest test found under another id: a new folder, read from the start.
    const moved = await executor.execute(sql`
      update ${mailboxFolderSyncs} s set folder_id = c.folder_ids ->> s.folder_path, delta_link = null, next_link = null, fence = s.fence + 1,
        lease_owner = null, lease_expires_at = null, due_at = ${now.toISOString()}::timestamptz
      from ${connectors} c
      where c.id = s.connector_id and c.folder_ids ->> s.folder_path is not null and c.folder_ids ->> s.folder_path <> s.folder_id
      returning s.id`)
    return added + rowsOf(removed).length + rowsOf(moved).length
  }

  /**
   * A connector's folders, created or brought up to date when it is enabled: the folder ids
   * its test found, due now. `ingestSince` is set for new folders, and for existing ones only
   * when given (an import asked for); an import also starts a round from the start.
   */
  async start(tx: Db, connectorId: string, folderIds: Record<string, string>, now: Date, importSince?: Date): Promise<void> {
    for (const [folderPath, folderId] of Object.entries(folderIds)) {
      const since = importSince ?? now
      await tx
        .insert(mailboxFolderSyncs)
        .values({ id: newId(), connectorId, folderPath, folderId, ingestSince: since, dueAt: now })
        .onConflictDoUpdate({
          target: [mailboxFolderSyncs.connectorId, mailboxFolderSyncs.folderPath],
          // A holder mid-round loses its lease (its writes are fenced off), so the reset stands.
          set: {
            folderId,
            dueAt: now,
            updatedAt: now,
            fence: sql`${mailboxFolderSyncs.fence} + 1`,
            leaseOwner: null,
            leaseExpiresAt: null,
            ...(importSince
              ? { ingestSince: importSince, deltaLink: null, nextLink: null }
              : {
                  deltaLink: sql`case when ${mailboxFolderSyncs.folderId} = ${folderId} then ${mailboxFolderSyncs.deltaLink} end`,
                  nextLink: sql`case when ${mailboxFolderSyncs.folderId} = ${folderId} then ${mailboxFolderSyncs.nextLink} end`,
                }),
          },
        })
    }
  }

  /** Folders dead instances were syncing (see Liveness): their leases end now, so another instance takes them over. */
  async releaseLeasesOf(tx: Db, deadInstances: string[]): Promise<number> {
    const freed = await tx
      .update(mailboxFolderSyncs)
      .set({ leaseExpiresAt: RELEASED })
      .where(and(isNotNull(mailboxFolderSyncs.leaseExpiresAt), heldByAny(mailboxFolderSyncs.leaseOwner, deadInstances)))
      .returning({ id: mailboxFolderSyncs.id })
    return freed.length
  }

  /**
   * Takes the lease of up to `limit` folders that are due and not held, or whose lease ran out, of
   * enabled incoming connectors; each claim raises the folder's fence and sets the folder due
   * again after `intervalMs`, so that a wake-up during the sync (due now) is not lost.
   */
  async claimDue(executor: Db, owner: string, limit: number, options: { leaseMs: number; intervalMs: number }, now: Date): Promise<ClaimedFolder[]> {
    if (limit <= 0) return []
    const leaseUntil = new Date(now.getTime() + options.leaseMs).toISOString()
    const nextDue = new Date(now.getTime() + options.intervalMs).toISOString()
    const rows = await executor.execute(sql`
      with due as (
        select s.id, g.expires_at as subscription_expires_at, g.renew_requested as subscription_renew_requested
        from ${mailboxFolderSyncs} s join ${connectors} c on c.id = s.connector_id
          left join ${graphSubscriptions} g on g.connector_id = s.connector_id and g.folder_path = s.folder_path
        where ((s.lease_expires_at is null and s.due_at <= ${now.toISOString()}::timestamptz)
            -- A holder that stopped renewing (a crash): its folder is taken over at once.
            or s.lease_expires_at < ${now.toISOString()}::timestamptz)
          and c.enabled and c.direction = 'incoming'
        order by s.due_at
        limit ${limit}
        for update of s skip locked
      )
      update ${mailboxFolderSyncs} s set lease_owner = ${owner}, lease_expires_at = ${leaseUntil}::timestamptz, fence = s.fence + 1, due_at = ${nextDue}::timestamptz
      from due, ${connectors} c
      where s.id = due.id and c.id = s.connector_id
      returning s.id, s.connector_id, s.folder_path, s.folder_id, s.ingest_since, s.delta_link, s.next_link, s.fence,
        s.due_at, c.integration_id, c.primary_address, c.after_processing,
        c.consecutive_failures > 0 and not exists (
          select 1 from ${mailboxFolderSyncs} o where o.connector_id = s.connector_id and o.id <> s.id and o.last_error ->> 'code' = 'FOLDER_NOT_FOUND'
        ) as resets_failures,
        due.subscription_expires_at, due.subscription_renew_requested`)
    return rowsOf<Record<string, unknown>>(rows).map((row) => ({
      id: String(row.id),
      connectorId: String(row.connector_id),
      folderPath: String(row.folder_path),
      folderId: String(row.folder_id),
      ingestSince: asDate(row.ingest_since),
      deltaLink: (row.delta_link as string | null) ?? null,
      nextLink: (row.next_link as string | null) ?? null,
      fence: Number(row.fence),
      integrationId: String(row.integration_id),
      mailbox: String(row.primary_address),
      afterProcessing: (row.after_processing as string | null) ?? null,
      resetsFailures: row.resets_failures === true,
      claimedDueAt: asDate(row.due_at),
      subscription:
        row.subscription_expires_at === null || row.subscription_expires_at === undefined
          ? null
          : { expiresAt: asDate(row.subscription_expires_at), renewRequested: row.subscription_renew_requested === true },
    }))
  }

  /**
   * Where the round stands after a page whose outcomes are committed: the next page, or (the
   * round over) the link of the next round. Only while the lease is still ours (same fence);
   * false when it is not, and nothing changed.
   */
  async saveProgress(
    executor: Db,
    folder: Pick<ClaimedFolder, 'id' | 'fence'>,
    progress: { nextLink?: string; deltaLink?: string; taken: number; skipped?: { graphMessageId: string; reason: string }[]; leaseUntil: Date },
    now: Date,
  ): Promise<boolean> {
    const roundOver = progress.deltaLink !== undefined
    const skipped = progress.skipped ?? []
    const lastSkipped = skipped.at(-1)
    return this.fenced(executor, folder, {
      nextLink: roundOver ? null : (progress.nextLink ?? null),
      ...(roundOver ? { deltaLink: progress.deltaLink, lastSyncedAt: now, lastError: null } : {}),
      messagesTaken: sql`${mailboxFolderSyncs.messagesTaken} + ${progress.taken}`,
      ...(lastSkipped
        ? { messagesSkipped: sql`${mailboxFolderSyncs.messagesSkipped} + ${skipped.length}`, lastSkipped: { ...lastSkipped, at: now.toISOString() } }
        : {}),
      leaseExpiresAt: progress.leaseUntil,
      updatedAt: now,
    })
  }

  /** Keeps the lease while a page is taken in (fenced: a lost lease is not taken back). */
  async renew(executor: Db, folder: Pick<ClaimedFolder, 'id' | 'fence'>, leaseUntil: Date): Promise<boolean> {
    return this.fenced(executor, folder, { leaseExpiresAt: leaseUntil })
  }

  /** Graph forgot the folder's links: the next round starts from the start. */
  async restartRound(executor: Db, folder: Pick<ClaimedFolder, 'id' | 'fence'>, now: Date): Promise<boolean> {
    return this.fenced(executor, folder, { deltaLink: null, nextLink: null, updatedAt: now })
  }

  /** An update made only while the folder's lease is still the holder's (same fence); whether it was. */
  private async fenced(executor: Db, folder: Pick<ClaimedFolder, 'id' | 'fence'>, changes: PgUpdateSetSource<typeof mailboxFolderSyncs>): Promise<boolean> {
    const rows = await executor
      .update(mailboxFolderSyncs)
      .set(changes)
      .where(and(eq(mailboxFolderSyncs.id, folder.id), eq(mailboxFolderSyncs.fence, folder.fence)))
      .returning({ id: mailboxFolderSyncs.id })
    return rows.length === 1
  }

  /**
   * Gives the lease back, with when the folder is next due and the failure, if any. The folder
   * is due at `dueAt` or earlier when woken meanwhile; `notBefore` (Graph's Retry-After) wins.
   * Returns when it is due (undefined when the lease was no longer ours).
   */
  async release(executor: Db, folder: Pick<ClaimedFolder, 'id' | 'fence'>, due: { dueAt: Date; notBefore?: Date }, error: SyncError | null, now: Date): Promise<Date | undefined> {
    const [released] = await executor
      .update(mailboxFolderSyncs)
      .set({
        leaseOwner: null,
        leaseExpiresAt: null,
        dueAt: due.notBefore ?? sql`least(${mailboxFolderSyncs.dueAt}, ${due.dueAt.toISOString()}::timestamptz)`,
        ...(error ? { lastError: error } : {}),
        updatedAt: now,
      })
      .where(and(eq(mailboxFolderSyncs.id, folder.id), eq(mailboxFolderSyncs.fence, folder.fence)))
      .returning({ dueAt: mailboxFolderSyncs.dueAt })
    return released?.dueAt
  }

  /**
   * Marks a connector's folders due now. A folder being synced is due again once its holder
   * lets it go, so mail that arrived during that sync is read at once.
   */
  async wake(executor: Db, connectorId: string, now: Date): Promise<void> {
    await executor
      .update(mailboxFolderSyncs)
      .set({ dueAt: now })
      .where(and(eq(mailboxFolderSyncs.connectorId, connectorId), sql`not (${waitingForRetryAfter(now)})`))
  }

  /**
   * Makes these folders due now (a change notification came for them); how many of them were
   * not due already and are free to claim. (One being synced needs no round: its holder
   * finds it woken when it lets it go, and starts one.)
   */
  async wakeFolders(executor: Db, folders: { connectorId: string; folderPath: string }[], now: Date): Promise<number> {
    if (folders.length === 0) return 0
    const pairs = sql.join(
      [...new Map(folders.map((folder) => [`${folder.connectorId}\u0000${folder.folderPath}`, folder])).values()].map((folder) => sql`(${folder.connectorId}::uuid, ${folder.folderPath}::text)`),
      sql`, `,
    )
    const woken = await executor.execute(
      sql`update ${mailboxFolderSyncs} set due_at = ${now.toISOString()}::timestamptz
        where (connector_id, folder_path) in (${pairs}) and due_at > ${now.toISOString()}::timestamptz and not (${waitingForRetryAfter(now)})
        returning lease_expires_at is null or lease_expires_at < ${now.toISOString()}::timestamptz as free`,
    )
    return rowsOf<{ free: boolean }>(woken).filter((row) => row.free).length
  }

  async listForConnector(executor: Db, connectorId: string): Promise<FolderSyncRow[]> {
    const s = mailboxFolderSyncs
    return executor
      .select({
        folderPath: s.folderPath,
        ingestSince: s.ingestSince,
        lastSyncedAt: s.lastSyncedAt,
        deltaLink: sql<boolean>`${s.deltaLink} is not null`,
        nextLink: sql<boolean>`${s.nextLink} is not null`,
        dueAt: s.dueAt,
        leaseExpiresAt: s.leaseExpiresAt,
        messagesTaken: s.messagesTaken,
        messagesSkipped: s.messagesSkipped,
        lastSkipped: s.lastSkipped,
        lastError: s.lastError,
        subscriptionExpiresAt: graphSubscriptions.expiresAt,
      })
      .from(s)
      .leftJoin(graphSubscriptions, and(eq(graphSubscriptions.connectorId, s.connectorId), eq(graphSubscriptions.folderPath, s.folderPath)))
      .where(eq(s.connectorId, connectorId))
      .orderBy(asc(s.folderPath))
  }

  /** When the next folder can be claimed (due and free, or its lease runs out), for the loop's wait. */
  async nextDueAt(executor: Db): Promise<Date | null> {
    const [row] = await executor
      .select({ next: sql<string | null>`min(case when ${mailboxFolderSyncs.leaseExpiresAt} is null then ${mailboxFolderSyncs.dueAt} else ${mailboxFolderSyncs.leaseExpiresAt} end)` })
      .from(mailboxFolderSyncs)
      .innerJoin(connectors, and(eq(connectors.id, mailboxFolderSyncs.connectorId), eq(connectors.enabled, true), eq(connectors.direction, 'incoming')))
    return row?.next ? new Date(row.next) : null
  }
}

/** A timestamp as a raw statement returns it (a Date from postgres.js, text from PGlite's execute). */
function asDate(value: unknown): Date {
  return value instanceof Date ? value : new Date(String(value))
}

/**
 * A folder Graph throttled, released until its Retry-After: a wake-up leaves it be. (A folder
 * being synced, its Retry-After over, is woken like any other.)
 */
function waitingForRetryAfter(now: Date) {
  // coalesce: without a last error the comparison is null, and `not null` would match nothing.
  return sql`coalesce(${mailboxFolderSyncs.lastError} ->> 'code' = 'THROTTLED', false) and ${mailboxFolderSyncs.dueAt} > ${now.toISOString()}::timestamptz and ${mailboxFolderSyncs.leaseExpiresAt} is null`
}
