import { randomFillSync } from 'node:crypto'
import { v7 as uuidv7 } from 'uuid'

// Random bytes drawn from the system in blocks (one call per 256 ids, not one per id), and
// uuid's own monotonic rule kept here, as uuid keeps no state for ids given their bytes:
// within one millisecond the sequence counts up, so ids still sort in creation order.
const BLOCK = 16 * 256
const pool = Buffer.alloc(BLOCK)
let offset = BLOCK
let lastMsecs = -Infinity
let seq = 0

/** Time-ordered ids: sorting by id sorts by creation, which keyset pagination relies on. */
export function newId(): string {
  if (offset === BLOCK) {
    randomFillSync(pool)
    offset = 0
  }
  const random = pool.subarray(offset, offset + 16)
  offset += 16
  const now = Date.now()
  if (now > lastMsecs) {
    seq = ((random[6]! & 0x7f) << 24) | (random[7]! << 16) | (random[8]! << 8) | random[9]!
    lastMsecs = now
  } else {
    seq = (seq + 1) | 0
    if (seq === 0) lastMsecs++
  }
  return uuidv7({ random, msecs: lastMsecs, seq })
}
