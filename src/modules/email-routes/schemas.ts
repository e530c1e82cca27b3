import { Type, type Static } from '@sinclair/typebox'
import { ROUTE_KINDS } from '../../../db/schema.ts'
import { DateTime, EmailAddress, Page, PageQuery, Uuid } from '../../lib/schemas.ts'
import { MultilineText, NOT_TEXT, Text } from '../../lib/text.ts'
import { LastTest } from '../connection-tests/schemas.ts'
import { DirectionSchema, WorkItemType } from '../connectors/schemas.ts'

/** A run of address characters: no space, @, * or control character. */
const ADDRESS_PART = `[^\\s@*${NOT_TEXT}]+`

const AddressOrDomain = Type.String({
  minLength: 3,
  maxLength: 320,
  pattern: `^(\\*@${ADDRESS_PART}\\.${ADDRESS_PART}|${ADDRESS_PART}@${ADDRESS_PART}\\.${ADDRESS_PART})$`,
  description: 'An address, or *@domain for everyone at a domain',
})

export const RouteRulesSchema = Type.Object(
  {
    importantOnly: Type.Optional(Type.Boolean({ description: 'Only mail marked important' })),
    attachmentTypes: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 20, pattern: '^\\.?[A-Za-z0-9]+$' }), {
        maxItems: 50,
        description: 'File extensions, e.g. pdf; the mail must carry one of them',
      }),
    ),
    subjectKeywords: Type.Optional(
      Type.Array(Text({ minLength: 1, maxLength: 200 }), { maxItems: 50, description: 'The subject must contain one of them' }),
    ),
    recipientIncludes: Type.Optional(Type.Array(AddressOrDomain, { maxItems: 200, description: 'One of these must be a recipient' })),
    senderIncludes: Type.Optional(Type.Array(AddressOrDomain, { maxItems: 200, description: 'The sender must be one of these' })),
  },
  { additionalProperties: false, description: 'All given rules must match; a list matches when any entry does' },
)

const RouteAddress = Type.String({
  minLength: 1,
  maxLength: 320,
  pattern: `^(\\*|${ADDRESS_PART}@${ADDRESS_PART}\\.${ADDRESS_PART})$`,
  description: 'Incoming: the address the mail was sent to, or * for a wildcard route (BCC mail). Outgoing: the alias to send as.',
})

export const CreateRouteBody = Type.Object(
  {
    connectorId: Uuid,
    name: Text({ minLength: 1, maxLength: 200 }),
    description: Type.Optional(MultilineText({ maxLength: 2000 })),
    emailAddress: RouteAddress,
    workItemType: Type.Optional(WorkItemType),
    processId: Type.Optional(Text({ minLength: 1, maxLength: 200 })),
    ticketCategory: Type.Optional(Text({ minLength: 1, maxLength: 200 })),
    rules: Type.Optional(RouteRulesSchema),
    sendAutomatedEmails: Type.Optional(Type.Boolean()),
    forAttention: Type.Optional(Type.Boolean()),
    testModeOnly: Type.Optional(Type.Boolean()),
    enabled: Type.Optional(Type.Boolean({ description: 'Incoming routes only; default true. Aliases are enabled after a test.' })),
  },
  { additionalProperties: false },
)
export type CreateRouteInput = Static<typeof CreateRouteBody>

export const UpdateRouteBody = Type.Partial(Type.Omit(CreateRouteBody, ['connectorId', 'enabled']), {
  additionalProperties: false,
  minProperties: 1,
})
export type UpdateRouteInput = Static<typeof UpdateRouteBody>

export const TestRouteBody = Type.Object(
  {
    emailAddress: Type.Optional(EmailAddress),
    testRecipient: Type.Optional({ ...EmailAddress, description: 'Where the test message goes; default the mailbox itself' }),
  },
  { additionalProperties: false, description: 'A candidate alias to test without saving it' },
)
export type TestRouteInput = Static<typeof TestRouteBody>

export const ReorderRoutesBody = Type.Object(
  {
    routeIds: Type.Array(Uuid, {
      minItems: 1,
      uniqueItems: true,
      description: 'Every specific and wildcard route of the connector, in the new order; specific ones first. The fallback stays last.',
    }),
  },
  { additionalProperties: false },
)

export const RouteSchema = Type.Object(
  {
    id: Uuid,
    connectorId: Uuid,
    direction: DirectionSchema,
    kind: Type.Union(ROUTE_KINDS.map((kind) => Type.Literal(kind)), {
      description: 'incoming: specific, wildcard, fallback; outgoing: default (the connector address), alias',
    }),
    name: Type.String(),
    description: Type.Union([Type.String(), Type.Null()]),
    emailAddress: Type.String(),
    workItemType: Type.Union([WorkItemType, Type.Null()]),
    processId: Type.Union([Type.String(), Type.Null()]),
    ticketCategory: Type.Union([Type.String(), Type.Null()]),
    rules: RouteRulesSchema,
    sendAutomatedEmails: Type.Boolean(),
    forAttention: Type.Boolean(),
    testModeOnly: Type.Boolean(),
    enabled: Type.Boolean(),
    priority: Type.Integer({ description: 'Order inside its group' }),
    verified: Type.Union([Type.Boolean(), Type.Null()], {
      description: 'Aliases: the latest test of the current address succeeded. Null for routes without a test of their own.',
    }),
    lastTest: LastTest,
    createdAt: DateTime,
    updatedAt: DateTime,
  },
  { $id: 'EmailRoute', description: 'An incoming route (which process mail becomes) or an outgoing alias' },
)
export type EmailRoute = Static<typeof RouteSchema>

export const ListRoutesQuery = Type.Object(
  {
    connectorId: Type.Optional({ ...Uuid, description: "With a connector: all its routes in evaluation order, on one page" }),
    direction: Type.Optional(DirectionSchema),
    ...PageQuery,
  },
  { additionalProperties: false },
)
export type ListRoutesInput = Static<typeof ListRoutesQuery>

export const RoutePage = Page(Type.Unsafe<EmailRoute>({ $ref: 'EmailRoute#' }), 'A page of routes')
export const RouteList = Type.Object(
  { items: Type.Array(Type.Unsafe<EmailRoute>({ $ref: 'EmailRoute#' })) },
  { description: "The connector's routes in evaluation order" },
)
