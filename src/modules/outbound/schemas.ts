import { Type, type Static } from '@sinclair/typebox'
import { MESSAGE_STATUSES } from '../../../db/schema.ts'
import { GRAPH_LIMITS } from '../../graph/limits.ts'
import { DateTime, EmailAddress, NullableDateTime, Page, PageQuery, Uuid } from '../../lib/schemas.ts'
import { MultilineText, Text } from '../../lib/text.ts'

/** Ours, not Graph's: attachments of one message, base64 and file parts together. */
export const MAX_ATTACHMENTS = 250

const Recipients = Type.Array(EmailAddress, { maxItems: GRAPH_LIMITS.recipientsPerMessage })

export const AttachmentInput = Type.Object(
  {
    name: Text({ minLength: 1, maxLength: 255 }),
    contentType: Text({ minLength: 3, maxLength: 255, default: 'application/octet-stream' }),
    contentBytes: Type.String({ pattern: '^[A-Za-z0-9+/=\\r\\n]*$', description: 'The file, base64' }),
    isInline: Type.Optional(Type.Boolean({ default: false })),
    contentId: Type.Optional(Text({ minLength: 1, maxLength: 255, description: 'For inline images: referenced as cid:<contentId>' })),
  },
  { additionalProperties: false },
)

export const SendMessageBody = Type.Object(
  {
    from: { ...EmailAddress, description: 'An enabled outgoing connector address or an enabled alias' },
    to: Type.Optional(Recipients),
    cc: Type.Optional(Recipients),
    bcc: Type.Optional(Recipients),
    replyTo: Type.Optional(Type.Array(EmailAddress, { maxItems: 10 })),
    subject: Text({ maxLength: 2000 }),
    body: Type.Object(
      {
        contentType: Type.Union([Type.Literal('text'), Type.Literal('html')]),
        content: MultilineText(),
      },
      { additionalProperties: false },
    ),
    attachments: Type.Optional(Type.Array(AttachmentInput, { maxItems: MAX_ATTACHMENTS })),
    headers: Type.Optional(
      Type.Record(Type.String({ pattern: '^[Xx]-[A-Za-z0-9-]{1,100}$' }), Text({ maxLength: 1000 }), {
        description: 'Custom headers; Graph accepts only names that start with x-',
        additionalProperties: false,
      }),
    ),
    importance: Type.Optional(Type.Union([Type.Literal('low'), Type.Literal('normal'), Type.Literal('high')])),
    workItemRef: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9._-]{1,64}$',
        description: 'The work item this mail belongs to; replies are matched back to it (x-mailgate-work-item header and a plus-addressed Reply-To)',
      }),
    ),
  },
  { additionalProperties: false },
)
export type SendMessageInput = Static<typeof SendMessageBody>

const FilePart = Type.Unsafe<never>({ type: 'string', contentMediaType: 'application/octet-stream' })

/** The multipart/form-data body as documented; multipart.ts reads it part by part. */
export const SendMessageForm = Type.Object(
  {
    message: {
      ...SendMessageBody,
      description: 'First part: the message as JSON, exactly as the JSON body (it may still carry small base64 attachments)',
    },
    attachment: Type.Optional(
      Type.Array(FilePart, {
        description: 'File parts after the message (250 attachments in all at most): the filename names the attachment, the part Content-Type is its type',
      }),
    ),
  },
  {
    patternProperties: {
      '^inline:.+$': { ...FilePart, description: 'An inline image: a part named inline:<contentId>, referenced in an html body as cid:<contentId>' },
    },
  },
)

export const StatusSchema = Type.Union(MESSAGE_STATUSES.map((status) => Type.Literal(status)))

export const MessageSchema = Type.Object(
  {
    id: Uuid,
    status: StatusSchema,
    connectorId: Uuid,
    from: Type.String(),
    to: Type.Array(Type.String()),
    cc: Type.Array(Type.String()),
    bcc: Type.Array(Type.String()),
    replyTo: Type.Array(Type.String()),
    subject: Type.String(),
    importance: Type.String(),
    headers: Type.Record(Type.String(), Type.String()),
    workItemRef: Type.Union([Type.String(), Type.Null()]),
    attachments: Type.Array(
      Type.Object({ name: Type.String(), contentType: Type.String(), size: Type.Integer(), isInline: Type.Boolean() }),
    ),
    totalBytes: Type.Integer(),
    attempts: Type.Integer(),
    lastError: Type.Union([
      Type.Object({
        code: Type.String(),
        message: Type.String(),
        hint: Type.Optional(Type.String()),
        graphCode: Type.Optional(Type.String()),
        status: Type.Optional(Type.Integer()),
      }),
      Type.Null(),
    ]),
    graphIds: Type.Object(
      {
        draftId: Type.Union([Type.String(), Type.Null()], { description: 'Immutable id of the draft it was sent through (Mail.ReadWrite)' }),
        internetMessageId: Type.Union([Type.String(), Type.Null()], { description: 'The Message-ID header, for matching replies' }),
      },
      { description: 'What Microsoft Graph knows the message by' },
    ),
    nextAttemptAt: { ...NullableDateTime, description: 'While queued: when the dispatcher will try it' },
    createdAt: DateTime,
    updatedAt: DateTime,
    sentAt: NullableDateTime,
    bounces: Type.Array(
      Type.Object({
        recipient: Type.Union([Type.String(), Type.Null()]),
        status: Type.Union([Type.String(), Type.Null()], { description: "The report's status code, e.g. 5.1.1" }),
        diagnostic: Type.Union([Type.String(), Type.Null()]),
        inboundEmailId: Uuid,
        at: DateTime,
      }),
      { description: 'Non-delivery reports received for it (GET /v1/inbound/{inboundEmailId}); a bounced message has at least one' },
    ),
  },
  { $id: 'Message', description: 'An outgoing message and where it stands' },
)
export type Message = Static<typeof MessageSchema>

export const AcceptedSchema = Type.Object(
  { id: Uuid, status: StatusSchema, createdAt: DateTime },
  { description: 'Stored and queued; GET /v1/messages/{id} follows it' },
)

export const ListMessagesQuery = Type.Object(
  {
    status: Type.Optional(StatusSchema),
    connectorId: Type.Optional(Uuid),
    workItemRef: Type.Optional(Text({ minLength: 1, maxLength: 64 })),
    ...PageQuery,
  },
  { additionalProperties: false },
)
export type ListMessagesInput = Static<typeof ListMessagesQuery>

export const MessagePage = Page(Type.Unsafe<Message>({ $ref: 'Message#' }), 'A page of messages')

export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Text({ minLength: 1, maxLength: 255, description: 'Same key and body within 24 h replays the first answer' }),
  ),
})
