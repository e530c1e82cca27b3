import { Type, type Static } from '@sinclair/typebox'
import { DateTime, NullableDateTime, Uuid } from '../../lib/schemas.ts'
import { Text } from '../../lib/text.ts'
import { EventTypePattern } from '../events/schemas.ts'

const Url = Type.String({ minLength: 1, maxLength: 2000, format: 'uri', description: 'Where events are POSTed: https (http only when WEBHOOK_ALLOW_HTTP=true), no user:password' })
const EventTypes = Type.Array(EventTypePattern, { minItems: 1, maxItems: 50, description: 'Event types to deliver: exact, `family.*`, or `*`' })

export const WebhookEndpointSchema = Type.Object(
  {
    id: Uuid,
    url: Type.String(),
    description: Type.Union([Type.String(), Type.Null()]),
    eventTypes: Type.Array(Type.String()),
    connectorId: Type.Union([Uuid, Type.Null()]),
    enabled: Type.Boolean(),
    parallel: Type.Boolean({ description: 'Events delivered side by side; otherwise one after another in feed order' }),
    disabledReason: Type.Union([Type.String(), Type.Null()]),
    disabledAt: NullableDateTime,
    failingSince: NullableDateTime,
    secondSecretUntil: Type.Union([DateTime, Type.Null()], { description: 'Until then the previous secret signs as well (after a rotation)' }),
    createdAt: DateTime,
    updatedAt: DateTime,
  },
  { $id: 'WebhookEndpoint', additionalProperties: false, description: 'A webhook endpoint (its secret is never shown again after it was made)' },
)
export type WebhookEndpoint = Static<typeof WebhookEndpointSchema>

export const WebhookWithSecretSchema = Type.Object(
  { endpoint: Type.Ref(WebhookEndpointSchema), secret: Type.String({ description: 'The signing secret (whsec_…): shown this once' }) },
  { $id: 'WebhookWithSecret', additionalProperties: false, description: 'An endpoint and its new signing secret, shown once' },
)

export const CreateWebhookBody = Type.Object(
  {
    url: Url,
    eventTypes: EventTypes,
    description: Type.Optional(Type.Union([Text({ maxLength: 500 }), Type.Null()], { description: 'What it is for; null for none' })),
    connectorId: Type.Optional(Type.Union([Uuid, Type.Null()])),
    enabled: Type.Optional(Type.Boolean()),
    parallel: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
)
export type CreateWebhookBody = Static<typeof CreateWebhookBody>

export const UpdateWebhookBody = Type.Partial(CreateWebhookBody, { additionalProperties: false, minProperties: 1 })
export type UpdateWebhookBody = Static<typeof UpdateWebhookBody>

export const RotateSecretBody = Type.Object(
  { overlapHours: Type.Optional(Type.Integer({ minimum: 0, maximum: 168, description: 'Hours the previous secret keeps signing (default 24)' })) },
  { additionalProperties: false },
)

export const WebhookTestResultSchema = Type.Object(
  {
    ok: Type.Boolean({ description: 'The receiver answered 2xx' }),
    status: Type.Union([Type.Integer(), Type.Null()]),
    durationMs: Type.Integer(),
    responseBody: Type.Union([Type.String(), Type.Null()], { description: 'The first 4 KB of the answer' }),
    error: Type.Union([Type.String(), Type.Null()]),
  },
  { $id: 'WebhookTestResult', additionalProperties: false, description: 'What the receiver answered to a ping' },
)
export type WebhookTestResult = Static<typeof WebhookTestResultSchema>

const Attempt = Type.Object({
  at: DateTime,
  status: Type.Union([Type.Integer(), Type.Null()]),
  durationMs: Type.Integer(),
  responseHeaders: Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()]),
  responseBody: Type.Union([Type.String(), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
})

export const WebhookDeliverySchema = Type.Object(
  {
    id: Uuid,
    eventId: Uuid,
    state: Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')]),
    attempts: Type.Integer(),
    nextAttemptAt: Type.Union([DateTime, Type.Null()]),
    lastStatus: Type.Union([Type.Integer(), Type.Null()]),
    lastError: Type.Union([Type.String(), Type.Null()]),
    deliveredAt: NullableDateTime,
    createdAt: DateTime,
    attemptLog: Type.Array(Attempt, { description: 'Each attempt, oldest first (the last 20)' }),
  },
  { $id: 'WebhookDelivery', additionalProperties: false, description: 'One event for one endpoint, and each attempt to deliver it' },
)
export type WebhookDelivery = Static<typeof WebhookDeliverySchema>

export const DeliveryParams = Type.Object({ id: Uuid, deliveryId: Uuid }, { additionalProperties: false })

export const ReplayBody = Type.Object(
  { since: Type.String({ format: 'date-time', description: 'Events that occurred at or after this time are delivered again' }) },
  { additionalProperties: false },
)

export const ReplayResultSchema = Type.Object(
  { queued: Type.Integer({ description: 'Deliveries queued' }) },
  { $id: 'WebhookReplayResult', additionalProperties: false, description: 'How many deliveries a replay queued' },
)
