import { Type, type Static } from '@sinclair/typebox'
import { DateTime, NullableDateTime } from '../../lib/schemas.ts'

export const FolderSyncState = Type.Object(
  {
    folderPath: Type.String(),
    /** Mail received before this is not taken in by a round that reads the folder from the start. */
    ingestSince: DateTime,
    lastSyncedAt: NullableDateTime,
    /** The folder has a delta link: its next round reads only what changed. */
    hasDeltaLink: Type.Boolean(),
    /** A round is in progress (a page after the first is next). */
    roundInProgress: Type.Boolean(),
    /** Due for a sync now (asked for, or its interval has passed); never for a disabled connector. */
    pending: Type.Boolean(),
    dueAt: DateTime,
    /** Held by an instance syncing it now. */
    syncing: Type.Boolean(),
    messagesTaken: Type.Integer(),
    /** Times a message was passed over because it cannot be taken in (over MESSAGE_SIZE_LIMIT, deleted before it was read); each is logged as a warning. A message Graph reports again (changed, or a resync) is passed over, and counted, again. */
    messagesSkipped: Type.Integer(),
    /** The last message passed over: its Graph id, why, and when. */
    lastSkipped: Type.Union([Type.Object({ graphMessageId: Type.String(), reason: Type.String(), at: DateTime }), Type.Null()]),
    lastError: Type.Union([Type.Object({ code: Type.String(), message: Type.String(), at: DateTime }), Type.Null()]),
    /** When the folder's Graph change-notification subscription runs out (renewed a day before); null: none (no PUBLIC_BASE_URL, or not made yet), and the folder is polled. */
    subscriptionExpiresAt: NullableDateTime,
  },
  { $id: 'FolderSyncState', additionalProperties: false, description: 'The sync of one folder' },
)
export type FolderSyncState = Static<typeof FolderSyncState>

export const ConnectorSync = Type.Object(
  {
    connectorId: Type.String({ format: 'uuid' }),
    /** A disabled connector's folders are shown as they were left, and not synced. */
    enabled: Type.Boolean(),
    folders: Type.Array(Type.Ref(FolderSyncState)),
  },
  { $id: 'ConnectorSync', additionalProperties: false, description: 'Where each folder of an incoming connector stands in the mailbox sync' },
)
export type ConnectorSync = Static<typeof ConnectorSync>
