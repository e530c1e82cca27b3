/** Where a reader of the feed stands: after the event (txId, id); (0, nil) is before the first. */
export interface FeedPosition {
  txId: number
  id: string
}

export const FEED_START: FeedPosition = { txId: 0, id: '00000000-0000-0000-0000-000000000000' }

/** Feed order: by transaction id, then event id. */
export function comparePositions(a: FeedPosition, b: FeedPosition): number {
  return a.txId !== b.txId ? a.txId - b.txId : a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}
