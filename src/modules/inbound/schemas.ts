import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { AUTOMATED_KINDS, INBOUND_OUTCOMES } from '../../../db/schema.ts'
import { DateTime, NullableDateTime, Page, PageQuery, Uuid } from '../../lib/schemas.ts'
import { Text } from '../../lib/text.ts'
import { WorkItemType } from '../connectors/schemas.ts'

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()])

export const OutcomeSchema = Type.Union(INBOUND_OUTCOMES.map((outcome) => Type.Literal(outcome)), {
  description:
    'received: stored, not yet processed; requested: new work requested; appended: added to known work; unhandled: see outcomeReason; discarded: blocked sender; ignored: mail Mailgate sent; duplicate: see duplicateOf',
})
export const AutomatedKindSchema = Type.Union(AUTOMATED_KINDS.map((kind) => Type.Literal(kind)))

const AddressSchema = Type.Object({ address: Type.String(), name: Nullable(Type.String()) })

const WorkItemLinkSchema = Type.Object(
  {
    id: Uuid,
    kind: Type.Union([Type.Literal('requested'), Type.Literal('appended')]),
    routeId: Nullable(Uuid),
    address: Type.String({ description: 'The recipient address the work came in through; * for BCC-only mail' }),
    workItemRef: Nullable(Type.String({ description: 'Appended: the work it joined. Requested: the reference the work-management system confirmed, if it has' })),
    automated: Type.Boolean(),
    testMode: Type.Boolean(),
    createdAt: DateTime,
    confirmedAt: NullableDateTime,
  },
  { description: 'Work the email requested or joined' },
)

const inboundSummaryFields = {
  id: Uuid,
  connectorId: Uuid,
  outcome: OutcomeSchema,
  outcomeReason: Nullable(
    Type.String({ description: 'unhandled: no_route, automated or processing_failed; discarded: blocked or spam; ignored: own_mail or test_message; duplicate: source, content or identity' }),
  ),
  duplicateOf: Nullable(Uuid),
  internetMessageId: Nullable(Type.String()),
  inReplyTo: Nullable(Type.String()),
  references: Type.Array(Type.String()),
  subject: Type.String(),
  from: Nullable(AddressSchema),
  sender: Nullable(Type.String()),
  returnPath: Nullable(Type.String({ description: 'Empty for the null return path <>' })),
  to: Type.Array(Type.String()),
  cc: Type.Array(Type.String()),
  bcc: Type.Array(Type.String()),
  replyTo: Type.Array(Type.String()),
  importance: Type.Union([Type.Literal('low'), Type.Literal('normal'), Type.Literal('high')]),
  sentAt: NullableDateTime,
  receivedAt: DateTime,
  processedAt: NullableDateTime,
  automated: Type.Union([
    Type.Object({ kind: AutomatedKindSchema, evidence: Type.Array(Type.String()) }, { description: 'Why the mail counts as automated' }),
    Type.Null(),
  ]),
  suppressAutomatedAnswer: Type.Boolean({ description: 'Do not answer this mail automatically (automated mail, lists, bulk, a sender asking not to)' }),
  testMode: Type.Boolean(),
  steps: Type.Array(Type.Object({ step: Type.String(), result: Type.String(), detail: Type.String() }), { description: 'What each pipeline step decided and why' }),
  attachments: Type.Array(
    Type.Object({
      index: Type.Integer({ description: 'For GET /v1/inbound/{id}/attachments/{index}' }),
      name: Type.String(),
      contentType: Type.String(),
      size: Type.Integer(),
      sha256: Type.String(),
      contentId: Nullable(Type.String()),
      inline: Type.Boolean(),
    }),
  ),
  source: Type.Object({ format: Type.Union([Type.Literal('mime'), Type.Literal('graph')]), size: Type.Integer() }, { description: 'The message as taken in, kept byte for byte' }),
  parseProblems: Type.Array(Type.String(), { description: 'What could not be read as given; the rest was processed' }),
  workItems: Type.Array(WorkItemLinkSchema),
  graphMessageId: Nullable(Type.String({ description: 'Mail the mailbox sync took in: the message’s immutable id in the mailbox' })),
  afterAction: Nullable(
    Type.Object(
      {
        action: Type.String({ description: 'markRead, delete or move:<folder path>' }),
        state: Type.Union([Type.Literal('pending'), Type.Literal('done'), Type.Literal('failed')]),
        attempts: Type.Integer(),
        lastError: Nullable(Type.String()),
        doneAt: Nullable(Type.String({ format: 'date-time' })),
      },
      { description: 'The connector’s after-processing action on the message, done once the outcome is committed' },
    ),
  ),
}

export const InboundEmailSummarySchema = Type.Object(inboundSummaryFields, { $id: 'InboundEmailSummary', description: 'A received email and what became of it' })
export type InboundEmailSummary = Static<typeof InboundEmailSummarySchema>

export const InboundEmailSchema = Type.Object(
  {
    ...inboundSummaryFields,
    headers: Type.Array(Type.Object({ name: Type.String(), value: Type.String() })),
    textBody: Type.String(),
    htmlBody: Nullable(Type.String({ description: 'Sanitised: no scripts, event handlers, forms or remote-content tricks' })),
  },
  { $id: 'InboundEmail', description: 'A received email with its headers and bodies' },
)
export type InboundEmail = Static<typeof InboundEmailSchema>

export const IngestQuery = Type.Object({ connectorId: Uuid }, { additionalProperties: false })

export const DuplicateSchema = Type.Object(
  {
    duplicateOf: Uuid,
    way: Type.Union([Type.Literal('source'), Type.Literal('content'), Type.Literal('identity')], {
      description: 'source: the same bytes; content: the same visible content; identity: the same Message-ID, sender, subject and recipients',
    }),
    email: Type.Ref(InboundEmailSchema),
  },
  { description: 'A duplicate: the email stored for it (for an exact repeat, the earlier one) and the original it repeats' },
)

export const ListInboundQuery = Type.Object(
  {
    connectorId: Type.Optional(Uuid),
    outcome: Type.Optional(OutcomeSchema),
    automatedKind: Type.Optional(AutomatedKindSchema),
    since: Type.Optional(DateTime),
    until: Type.Optional(DateTime),
    workItemRef: Type.Optional(Text({ minLength: 1, maxLength: 100 })),
    from: Type.Optional(Text({ minLength: 3, maxLength: 320, description: 'Sender address' })),
    ...PageQuery,
  },
  { additionalProperties: false },
)
export type ListInboundInput = Static<typeof ListInboundQuery>

export const InboundPage = Page(Type.Unsafe<InboundEmailSummary>({ $ref: 'InboundEmailSummary#' }), 'A page of received emails, newest first')

export const AttachmentParams = Type.Object({ id: Uuid, index: Type.Integer({ minimum: 0, maximum: 100_000 }) }, { additionalProperties: false })

export const ConfirmWorkItemBody = Type.Object(
  {
    routeId: Uuid,
    workItemRef: Text({ minLength: 1, maxLength: 100, description: 'The reference the work-management system gave the work item' }),
  },
  { additionalProperties: false, description: 'Which work item the request through this route became' },
)
export type ConfirmWorkItemInput = Static<typeof ConfirmWorkItemBody>

export const CreateRouteFromEmailBody = Type.Object(
  {
    match: Type.Union([Type.Literal('recipient'), Type.Literal('sender')], {
      description: 'recipient: a route for the address the email was sent to; sender: a wildcard route for its sender',
    }),
    emailAddress: Type.Optional(Text({ minLength: 3, maxLength: 320, description: 'recipient: which of the email\'s To/Cc addresses (default the first)' })),
    name: Type.Optional(Text({ minLength: 1, maxLength: 200 })),
    workItemType: WorkItemType,
    processId: Text({ minLength: 1, maxLength: 200 }),
    ticketCategory: Type.Optional(Text({ minLength: 1, maxLength: 200 })),
    reapply: Type.Optional(
      Type.Object({ since: DateTime, until: DateTime }, { additionalProperties: false, description: "Run the connector's unhandled emails received in this range through the pipeline again" }),
    ),
  },
  { additionalProperties: false },
)
export type CreateRouteFromEmailInput = Static<typeof CreateRouteFromEmailBody>

const reapplyResultFields = {
  reapplied: Type.Integer({ description: 'Unhandled emails run through the pipeline again' }),
  changed: Type.Integer({ description: 'How many of them changed outcome' }),
  nextAfterId: Type.Union([Uuid, Type.Null()], {
    description: 'Set when the range holds more than one call re-applies (1,000): pass it as afterId to POST /v1/inbound/reapply',
  }),
}

export const RouteFromEmailResultSchema = Type.Object({ routeId: Uuid, ...reapplyResultFields }, { description: 'The route created, and what re-applying it changed' })
export const ReapplyResultSchema = Type.Object(reapplyResultFields, { description: 'What re-applying changed' })

export const ReapplyBody = Type.Object(
  {
    connectorId: Uuid,
    since: DateTime,
    until: DateTime,
    afterId: Type.Optional({ ...Uuid, description: 'The nextAfterId of the previous call, to go on' }),
  },
  { additionalProperties: false, description: "Which connector's unhandled emails to run through the pipeline again, by when they were received" },
)
export type ReapplyInput = Static<typeof ReapplyBody>

export const ReprocessResultSchema = Type.Object(
  { before: OutcomeSchema, email: Type.Ref(InboundEmailSchema) },
  { description: 'The outcome before, and the email as it stands now' },
)
