import { and, asc, eq, lt, notExists, sql, type SQL } from 'drizzle-orm'
import type { PgColumn } from 'drizzle-orm/pg-core'
import { attachmentBlobs, attachmentChunks } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { newId } from '../../lib/ids.ts'

/** Longer than any upload can take: a blob younger than this may belong to a request still streaming. */
export const STAGED_UPLOAD_GRACE_MS = 6 * 3600 * 1000

/** Stored chunk size: small enough that no step holds more than a few of them at once. */
export const STORAGE_CHUNK_BYTES = 1024 * 1024

/**
 * Content goes to the server base64-encoded, for it to decode. Given a Buffer, both drivers
 * hex-encode it themselves with extra copies, PGlite byte by byte in JavaScript: tens of MB of
 * garbage per MB stored, more than the collector reclaims in time while a large upload streams.
 */
function bytea(data: Buffer): SQL {
  return sql`decode(${data.toString('base64')}, 'base64')`
}

/** Read back base64 for the same reason: PGlite decodes bytea results byte by byte too. */
const base64Data = sql<string>`encode(${attachmentChunks.data}, 'base64')`

export interface StoredBlob {
  blobId: string
  size: number
}

/**
 * Content in the database (attachments of outgoing and incoming mail, raw messages), written
 * and read in chunks. A blob is written before the row that owns it commits; each owning
 * module names its referencing column with `addOwner`, and blobs no owner references (an
 * upload that was refused or cut off) are removed by `removeUnreferenced`.
 */
export class AttachmentStore {
  private readonly owners: PgColumn[] = []

  /** A column (of another module's table) whose rows own the blobs they reference. */
  addOwner(blobIdColumn: PgColumn): void {
    this.owners.push(blobIdColumn)
  }

  /** Writes a whole buffer (the JSON submit path) as one blob. */
  async write(executor: Db, content: Buffer): Promise<StoredBlob> {
    const blobId = newId()
    if (content.length <= STORAGE_CHUNK_BYTES) {
      // Most content (a synced message's JSON, a small upload) is one chunk: one statement, not two.
      await executor.execute(sql`
        with blob as (insert into ${attachmentBlobs} (id, size) values (${blobId}::uuid, ${content.length}) returning id)
        insert into ${attachmentChunks} (blob_id, seq, data) select id, 0, ${bytea(content)} from blob`)
      return { blobId, size: content.length }
    }
    await executor.insert(attachmentBlobs).values({ id: blobId, size: content.length })
    const chunks: { blobId: string; seq: number; data: Buffer }[] = []
    for (let seq = 0; seq * STORAGE_CHUNK_BYTES < content.length || seq === 0; seq++) {
      chunks.push({ blobId, seq, data: content.subarray(seq * STORAGE_CHUNK_BYTES, (seq + 1) * STORAGE_CHUNK_BYTES) })
    }
    // A few chunks per statement keep the encoded parameters small.
    for (let i = 0; i < chunks.length; i += 4) {
      await executor.insert(attachmentChunks).values(chunks.slice(i, i + 4).map((chunk) => ({ ...chunk, data: bytea(chunk.data) })))
    }
    return { blobId, size: content.length }
  }

  /**
   * Writes a stream as one blob, a chunk at a time, so that only one chunk is in memory.
   * `onData` sees every byte (for hashing and size limits) and may throw to stop the write.
   */
  async writeStream(executor: Db, source: AsyncIterable<Buffer>, onData: (data: Buffer) => void = () => {}): Promise<StoredBlob> {
    const blobId = newId()
    await executor.insert(attachmentBlobs).values({ id: blobId, size: 0 })
    let seq = 0
    let size = 0
    let pending: Buffer[] = []
    let pendingBytes = 0
    const flush = async () => {
      const data = Buffer.concat(pending, pendingBytes)
      await executor.insert(attachmentChunks).values({ blobId, seq: seq++, data: bytea(data) })
      pending = []
      pendingBytes = 0
    }
    for await (const data of source) {
      onData(data)
      size += data.length
      let rest = data
      while (pendingBytes + rest.length >= STORAGE_CHUNK_BYTES) {
        const take = STORAGE_CHUNK_BYTES - pendingBytes
        pending.push(rest.subarray(0, take))
        pendingBytes += take
        rest = rest.subarray(take)
        await flush()
      }
      if (rest.length > 0) {
        pending.push(rest)
        pendingBytes += rest.length
      }
    }
    if (pendingBytes > 0 || seq === 0) await flush()
    await executor.update(attachmentBlobs).set({ size }).where(eq(attachmentBlobs.id, blobId))
    return { blobId, size }
  }

  /** The blob's bytes in order, one stored chunk at a time. */
  async *chunks(executor: Db, blobId: string): AsyncGenerator<Buffer> {
    for (let seq = 0; ; seq++) {
      const [row] = await executor
        .select({ data: base64Data })
        .from(attachmentChunks)
        .where(and(eq(attachmentChunks.blobId, blobId), eq(attachmentChunks.seq, seq)))
      if (!row) return
      yield Buffer.from(row.data, 'base64')
    }
  }

  /** The whole blob; only for content small enough to travel inside one Graph request. */
  async read(executor: Db, blobId: string): Promise<Buffer> {
    const rows = await executor
      .select({ data: base64Data })
      .from(attachmentChunks)
      .where(eq(attachmentChunks.blobId, blobId))
      .orderBy(asc(attachmentChunks.seq))
    return Buffer.concat(rows.map((row) => Buffer.from(row.data, 'base64')))
  }

  /**
   * The blob re-cut into pieces of `pieceBytes` (upload-session chunks), reading stored
   * chunks as needed so that at most one piece plus one stored chunk is in memory.
   */
  async *pieces(executor: Db, blobId: string, pieceBytes: number): AsyncGenerator<Buffer> {
    let pending: Buffer[] = []
    let pendingBytes = 0
    for await (const chunk of this.chunks(executor, blobId)) {
      let rest = chunk
      while (pendingBytes + rest.length >= pieceBytes) {
        const take = pieceBytes - pendingBytes
        pending.push(rest.subarray(0, take))
        yield Buffer.concat(pending, pieceBytes)
        pending = []
        pendingBytes = 0
        rest = rest.subarray(take)
      }
      if (rest.length > 0) {
        pending.push(rest)
        pendingBytes += rest.length
      }
    }
    if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes)
  }

  async remove(executor: Db, blobIds: string[]): Promise<void> {
    if (blobIds.length === 0) return
    await executor.delete(attachmentBlobs).where(sql`${attachmentBlobs.id} in ${blobIds}`)
  }

  /** Staged blobs older than `before` that no owner took: uploads refused or cut off. */
  async removeUnreferenced(executor: Db, before: Date): Promise<number> {
    const unowned = this.owners.map((column) =>
      notExists(executor.select({ one: sql`1` }).from(column.table).where(eq(column, attachmentBlobs.id))),
    )
    const removed = await executor
      .delete(attachmentBlobs)
      .where(and(lt(attachmentBlobs.createdAt, before), ...unowned))
      .returning({ id: attachmentBlobs.id })
    return removed.length
  }
}
