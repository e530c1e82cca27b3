import { createHash, randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/database/index.ts'
import { AttachmentStore, STORAGE_CHUNK_BYTES } from '../src/modules/attachments/store.ts'
import { createTestDatabase, type TestDatabase } from './support/database.ts'

let db: TestDatabase
const store = new AttachmentStore()

beforeAll(async () => {
  db = await createTestDatabase()
})
afterAll(() => db.drop())

async function* inPieces(content: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let offset = 0
  for (let i = 0; offset < content.length; i++) {
    const size = sizes[i % sizes.length]!
    yield content.subarray(offset, offset + size)
    offset += size
  }
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const pieces: Buffer[] = []
  for await (const piece of source) pieces.push(piece)
  return pieces
}

describe('attachment content in chunks', () => {
  it('stores a buffer across chunk boundaries and reads it back byte for byte', async () => {
    const content = randomBytes(STORAGE_CHUNK_BYTES * 2 + 17)
    const { blobId, size } = await store.write(db.database.db, content)
    expect(size).toBe(content.length)
    const chunks = await collect(store.chunks(db.database.db, blobId))
    expect(chunks.map((chunk) => chunk.length)).toEqual([STORAGE_CHUNK_BYTES, STORAGE_CHUNK_BYTES, 17])
    expect((await store.read(db.database.db, blobId)).equals(content)).toBe(true)
  })

  it('writes a stream whatever its piece sizes, and reports every byte to the caller', async () => {
    const content = randomBytes(STORAGE_CHUNK_BYTES * 3 + 5)
    const seen = createHash('sha256')
    const { blobId, size } = await store.writeStream(db.database.db, inPieces(content, [7, 65_536, STORAGE_CHUNK_BYTES + 3]), (data) => seen.update(data))
    expect(size).toBe(content.length)
    expect(seen.digest('hex')).toBe(createHash('sha256').update(content).digest('hex'))
    expect((await store.read(db.database.db, blobId)).equals(content)).toBe(true)
  })

  it('re-cuts a blob into upload pieces of a given size', async () => {
    const content = randomBytes(STORAGE_CHUNK_BYTES * 9 + 100)
    const { blobId } = await store.write(db.database.db, content)
    const pieces = await collect(store.pieces(db.database.db, blobId, 4 * 1024 * 1024))
    expect(pieces.map((piece) => piece.length)).toEqual([4 * 1024 * 1024, 4 * 1024 * 1024, STORAGE_CHUNK_BYTES + 100])
    expect(Buffer.concat(pieces).equals(content)).toBe(true)
  })

  it('keeps an empty file as an empty blob', async () => {
    const { blobId } = await store.writeStream(db.database.db, inPieces(Buffer.alloc(0), [1]))
    expect((await store.read(db.database.db, blobId)).length).toBe(0)
    expect(await collect(store.pieces(db.database.db, blobId, 10))).toEqual([])
  })

  it('removes staged blobs nobody took, and their chunks, once they are old enough', async () => {
    const { blobId } = await store.write(db.database.db, randomBytes(100))
    expect(await store.removeUnreferenced(db.database.db, new Date(Date.now() - 60_000))).toBe(0)
    expect(await store.removeUnreferenced(db.database.db, new Date(Date.now() + 1_000))).toBeGreaterThanOrEqual(1)
    const left = await db.database.db.select().from(schema.attachmentChunks)
    expect(left.some((chunk) => chunk.blobId === blobId)).toBe(false)
  })
})
