import { Type, type Static, type TObject, type TProperties } from '@sinclair/typebox'
import { EVENT_TYPES, type EventType } from '../../../db/schema.ts'
import { DateTime, Uuid } from '../../lib/schemas.ts'
import { Text } from '../../lib/text.ts'

/**
 * Every event type and the shape of its `data`: the one place the feed, webhooks, the OpenAPI
 * document (components and `webhooks`) and the tests take them from. `data` is what was
 * decided, as it was when it was decided, with the ids to fetch the rest from the API; it
 * never holds a secret.
 */

const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()])
const NullableUuid = Nullable(Uuid)
const NullableText = Type.Union([Type.String(), Type.Null()])

/** The received email an event is about (GET /v1/inbound/{emailId} shows it whole). */
const EmailFacts = {
  emailId: Uuid,
  connectorId: Uuid,
  from: NullableText,
  subject: Type.String(),
  receivedAt: DateTime,
}

const MessageError = Type.Object({
  code: Type.String(),
  message: Type.String(),
  hint: Type.Optional(Type.String()),
  graphCode: Type.Optional(Type.String()),
  status: Type.Optional(Type.Integer()),
})

/** A sent message's outcome (GET /v1/messages/{messageId} shows it whole). */
const MessageOutcome = Type.Object(
  {
    messageId: Uuid,
    connectorId: Uuid,
    from: Type.String(),
    workItemRef: NullableText,
    attempts: Type.Integer(),
    error: Type.Optional(MessageError),
    internetMessageId: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
)

const data = (properties: TProperties, description: string) => Type.Object(properties, { additionalProperties: true, description })

export const EVENT_DATA: Record<EventType, TObject> = {
  'work_item.requested': data(
    {
      ...EmailFacts,
      requestId: Uuid,
      routeId: NullableUuid,
      address: NullableText,
      workItemType: NullableText,
      processId: NullableText,
      ticketCategory: NullableText,
      forAttention: Type.Boolean(),
      sendAutomatedEmails: Type.Boolean(),
      testMode: Type.Boolean(),
      suppressAutomatedAnswer: Type.Boolean(),
    },
    'A received email asks for a new work item: create it, then confirm it (PUT /v1/inbound/{emailId}/work-item).',
  ),
  'work_item.message_appended': data(
    {
      ...EmailFacts,
      workItemRef: Type.String(),
      automated: Type.Boolean(),
      automatedKind: NullableText,
      matchedBy: NullableText,
    },
    'A received email belongs to an existing work item (a reply): add it there.',
  ),
  'email.unhandled': data({ ...EmailFacts, reason: Type.String(), automatedKind: NullableText }, 'A received email matched no route, or was automated mail not to act on: someone should look at it.'),
  'email.discarded': data({ ...EmailFacts, reason: Type.String(), blockedAddressId: NullableUuid }, 'A received email was discarded (a blocked sender).'),
  'email.duplicate': data(
    { emailId: Uuid, connectorId: Uuid, duplicateOf: Uuid, way: Type.String() },
    'A received email is a copy of an earlier one (`duplicateOf`); nothing new to do.',
  ),
  'message.sent': Type.Composite([MessageOutcome], { additionalProperties: true, description: 'A message was sent.' }),
  'message.failed': Type.Composite([MessageOutcome], { additionalProperties: true, description: 'A message could not be sent; `error` says why.' }),
  'message.uncertain': Type.Composite([MessageOutcome], {
    additionalProperties: true,
    description: 'A message may or may not have gone out; a person should check (and retry it if it did not).',
  }),
  'message.bounced': data(
    {
      messageId: Uuid,
      connectorId: Uuid,
      workItemRef: NullableText,
      recipient: NullableText,
      status: NullableText,
      diagnostic: NullableText,
      inboundEmailId: Uuid,
      at: DateTime,
    },
    'A sent message came back undelivered for a recipient (a delivery report).',
  ),
  'webhook.disabled': data(
    { endpointId: Uuid, url: Type.String(), reason: Type.String() },
    'A webhook endpoint was disabled: it answered 410 Gone, or every delivery to it failed for 3 days.',
  ),
  'connector.disabled': data(
    { connectorId: Uuid, name: Type.String(), reason: NullableText, automatic: Type.Boolean() },
    'A connector was disabled: by a person, or automatically after its mailbox failed too often.',
  ),
}

/** `message.sent` -> `MessageSent`: the component name of the event type. */
export function eventComponentName(type: EventType): string {
  return `Event${type
    .split(/[._]/)
    .map((part) => part[0]!.toUpperCase() + part.slice(1))
    .join('')}`
}

const envelope = (type: EventType, dataSchema: TObject) =>
  Type.Object(
    {
      id: Uuid,
      type: Type.Literal(type),
      occurredAt: DateTime,
      subject: Type.Object({ type: Type.String(), id: Uuid }, { description: 'What the event is about (its `type` names the resource: inbound_email, message, connector)' }),
      data: dataSchema,
    },
    { $id: eventComponentName(type), description: dataSchema.description, additionalProperties: false },
  )

/** One schema per event type, as webhooks deliver it and the feed lists it. */
export const EVENT_SCHEMAS = EVENT_TYPES.map((type) => envelope(type, EVENT_DATA[type]))

/** What `POST /v1/webhooks/{id}/test` sends: never in the feed, signed like any delivery. */
export const PING_SCHEMA = Type.Object(
  {
    id: Uuid,
    type: Type.Literal('ping'),
    occurredAt: DateTime,
    subject: Type.Object({ type: Type.Literal('webhook'), id: Uuid }),
    data: Type.Object({ endpointId: Uuid }, { additionalProperties: true }),
  },
  { $id: 'EventPing', description: 'A test of the endpoint (POST /v1/webhooks/{id}/test); not in the feed', additionalProperties: false },
)

/** What the feed lists: any of EVENT_SCHEMAS (the response is not checked against each, for speed). */
export const FeedEvent = Type.Object(
  {
    id: Uuid,
    type: Type.String({ description: `One of ${EVENT_TYPES.join(', ')}` }),
    occurredAt: DateTime,
    subject: Type.Object({ type: Type.String(), id: Uuid }),
    data: Type.Object({}, { additionalProperties: true, description: "The event type's data: see the Event* components and the webhooks section" }),
    cursor: Type.String({ description: 'Pass as `after` to read the events after this one' }),
  },
  { $id: 'FeedEvent', additionalProperties: false, description: 'An event, as the feed lists it' },
)
export type FeedEvent = Static<typeof FeedEvent>

export const EventFeedPage = Type.Object(
  {
    items: Type.Array(Type.Ref(FeedEvent)),
    next: Type.String({ description: 'Pass as `after` to read on: the last item’s cursor, or (no items) the one given' }),
  },
  { $id: 'EventFeedPage', additionalProperties: false, description: 'Events in commit order after a cursor' },
)
export type EventFeedPage = Static<typeof EventFeedPage>

/** Exact types, or a family with a wildcard: `message.*`; `*` is every type. */
export const EventTypePattern = Type.String({ minLength: 1, maxLength: 64, pattern: '^(\\*|[a-z_]+\\.(\\*|[a-z_]+))$', description: 'An event type, `family.*`, or `*`' })

export const EventFeedQuery = Type.Object(
  {
    after: Type.Optional(Text({ minLength: 1, maxLength: 200, description: 'A cursor from an earlier page (`next`) or event (`cursor`); without it, from the oldest event kept' })),
    types: Type.Optional(Text({ minLength: 1, maxLength: 1000, description: 'Comma-separated event types, `family.*` wildcards allowed (e.g. `work_item.*,message.failed`)' })),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 100, description: 'Events per page' }),
    wait: Type.Optional(
      Type.String({ pattern: '^([0-9]|[12][0-9]|30)s?$', description: 'Long poll: with no event to return, wait up to this many seconds (0–30, e.g. `30s`) for one' }),
    ),
  },
  { additionalProperties: false },
)
export type EventFeedQuery = Static<typeof EventFeedQuery>
