import { Type, type Static } from '@sinclair/typebox'
import { createSelectSchema } from 'drizzle-typebox'
import { auditEvents } from '../../../db/schema.ts'
import { DateTime, Page, PageQuery, Uuid } from '../../lib/schemas.ts'
import { Text } from '../../lib/text.ts'

export const AuditEventSchema = createSelectSchema(auditEvents, {
  occurredAt: DateTime,
  diff: Type.Object(
    {
      changes: Type.Record(Type.String(), Type.Unknown(), {
        description: 'Changed fields with `from` and `to`; secret fields show only `changed: true`',
      }),
      details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    },
    { additionalProperties: true },
  ),
})
Object.assign(AuditEventSchema, { $id: 'AuditEvent' })

export type AuditEvent = Static<typeof AuditEventSchema>

export const ListAuditQuery = Type.Object(
  {
    resourceType: Type.Optional(Text({ minLength: 1, maxLength: 100 })),
    resourceId: Type.Optional(Text({ minLength: 1, maxLength: 200 })),
    action: Type.Optional(Text({ minLength: 1, maxLength: 50 })),
    actorKeyId: Type.Optional(Uuid),
    since: Type.Optional(DateTime),
    until: Type.Optional(DateTime),
    ...PageQuery,
  },
  { additionalProperties: false },
)

export const AuditPage = Page(Type.Unsafe<AuditEvent>({ $ref: 'AuditEvent#' }), 'A page of audit events')
