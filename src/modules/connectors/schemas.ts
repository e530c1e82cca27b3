import { Type, type Static } from '@sinclair/typebox'
import { DIRECTIONS } from '../../../db/schema.ts'
import { DateTime, EmailAddress, NullableDateTime, Page, PageQuery, Uuid } from '../../lib/schemas.ts'
import { NOT_TEXT, Text } from '../../lib/text.ts'
import { LastTest } from '../connection-tests/schemas.ts'

export const DirectionSchema = Type.Union(
  DIRECTIONS.map((direction) => Type.Literal(direction)),
  { description: 'incoming reads mail into work; outgoing sends mail. Fixed at creation.' },
)
/** One folder's name: anything but / and control characters. */
const FOLDER_NAME = `[^/${NOT_TEXT}]+`

export const FolderPath = Type.String({
  minLength: 1,
  maxLength: 400,
  pattern: `^${FOLDER_NAME}(/${FOLDER_NAME})*$`,
  description: 'A folder path such as Inbox or Inbox/Invoices; Inbox is the well-known inbox in any language',
})
export const AfterProcessing = Type.String({
  pattern: `^(markRead|delete|move:${FOLDER_NAME}(/${FOLDER_NAME})*)$`,
  description: 'What happens to a processed email: markRead, delete, or move:<folder path>',
})
export const WorkItemType = Type.Union([Type.Literal('ticket'), Type.Literal('case')])

export const FallbackRouteInput = Type.Object(
  {
    name: Type.Optional(Text({ minLength: 1, maxLength: 200 })),
    workItemType: WorkItemType,
    processId: Text({ minLength: 1, maxLength: 200, description: 'Process id in the work-management system' }),
    ticketCategory: Type.Optional(Text({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false, description: 'The process that mail no other route catches becomes' },
)

const incomingFields = {
  folderPaths: Type.Array(FolderPath, { minItems: 1, maxItems: 20, uniqueItems: true }),
  afterProcessing: AfterProcessing,
  sendAutomatedEmails: Type.Boolean(),
  testModeOnly: Type.Boolean(),
  emailClassification: Type.Boolean(),
  sentimentAnalysis: Type.Boolean(),
  emailDataExtraction: Type.Boolean(),
  thankYouEvaluation: Type.Boolean(),
}
export const INCOMING_ONLY_FIELDS = Object.keys(incomingFields) as (keyof typeof incomingFields)[]

export const CreateConnectorBody = Type.Object(
  {
    integrationId: Uuid,
    name: Text({ minLength: 1, maxLength: 200 }),
    direction: DirectionSchema,
    primaryAddress: EmailAddress,
    folderPaths: Type.Optional(incomingFields.folderPaths),
    afterProcessing: Type.Optional(incomingFields.afterProcessing),
    sendAutomatedEmails: Type.Optional(Type.Boolean()),
    testModeOnly: Type.Optional(Type.Boolean()),
    emailClassification: Type.Optional(Type.Boolean()),
    sentimentAnalysis: Type.Optional(Type.Boolean()),
    emailDataExtraction: Type.Optional(Type.Boolean()),
    thankYouEvaluation: Type.Optional(Type.Boolean()),
    fallbackRoute: Type.Optional(FallbackRouteInput),
  },
  { additionalProperties: false },
)
export type CreateConnectorInput = Static<typeof CreateConnectorBody>

export const UpdateConnectorBody = Type.Object(
  {
    integrationId: Type.Optional(Uuid),
    name: Type.Optional(Text({ minLength: 1, maxLength: 200 })),
    direction: Type.Optional(DirectionSchema),
    primaryAddress: Type.Optional(EmailAddress),
    folderPaths: Type.Optional(incomingFields.folderPaths),
    afterProcessing: Type.Optional(incomingFields.afterProcessing),
    sendAutomatedEmails: Type.Optional(Type.Boolean()),
    testModeOnly: Type.Optional(Type.Boolean()),
    emailClassification: Type.Optional(Type.Boolean()),
    sentimentAnalysis: Type.Optional(Type.Boolean()),
    emailDataExtraction: Type.Optional(Type.Boolean()),
    thankYouEvaluation: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
)
export type UpdateConnectorInput = Static<typeof UpdateConnectorBody>

export const TestConnectorBody = Type.Object(
  {
    integrationId: Type.Optional(Uuid),
    primaryAddress: Type.Optional(EmailAddress),
    folderPaths: Type.Optional(incomingFields.folderPaths),
    afterProcessing: Type.Optional(incomingFields.afterProcessing),
    testRecipient: Type.Optional({
      ...EmailAddress,
      description: 'Outgoing: where the test message goes; default the mailbox itself',
    }),
  },
  {
    additionalProperties: false,
    description: 'Candidate connection settings to test without saving them; empty tests the saved ones',
  },
)
export type TestConnectorInput = Static<typeof TestConnectorBody>

export const EnableConnectorBody = Type.Object(
  {
    importExisting: Type.Optional(
      Type.Boolean({ description: 'Incoming: also take in mail already in the folders (received since `importSince`, or all of it). Without it, only mail that arrives from now on.' }),
    ),
    importSince: Type.Optional({ ...DateTime, description: 'With importExisting: the earliest received date taken in' }),
  },
  { additionalProperties: false, description: 'Empty for an outgoing connector; send no body or {}' },
)
export type EnableConnectorInput = Static<typeof EnableConnectorBody>

export const DisableConnectorBody = Type.Object(
  { reason: Type.Optional(Text({ minLength: 1, maxLength: 500 })) },
  { additionalProperties: false },
)

export const ConnectorSchema = Type.Object(
  {
    id: Uuid,
    integrationId: Uuid,
    name: Type.String(),
    direction: DirectionSchema,
    primaryAddress: Type.String(),
    enabled: Type.Boolean(),
    folderPaths: Type.Union([Type.Array(Type.String()), Type.Null()]),
    folderIds: Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()], {
      description: 'Folder ids by path, found by the latest successful test',
    }),
    afterProcessing: Type.Union([Type.String(), Type.Null()]),
    sendAutomatedEmails: Type.Boolean(),
    testModeOnly: Type.Boolean(),
    emailClassification: Type.Boolean(),
    sentimentAnalysis: Type.Boolean(),
    emailDataExtraction: Type.Boolean(),
    thankYouEvaluation: Type.Boolean(),
    verified: Type.Boolean({ description: 'The latest test of the saved connection settings succeeded' }),
    integrationVerified: Type.Boolean(),
    consecutiveFailures: Type.Integer(),
    disabledReason: Type.Union([Type.String(), Type.Null()]),
    disabledAt: NullableDateTime,
    lastTest: LastTest,
    createdAt: DateTime,
    updatedAt: DateTime,
  },
  { $id: 'Connector', description: 'A shared mailbox, read (incoming) or sent from (outgoing)' },
)
export type Connector = Static<typeof ConnectorSchema>

export const ListConnectorsQuery = Type.Object(
  {
    integrationId: Type.Optional(Uuid),
    direction: Type.Optional(DirectionSchema),
    enabled: Type.Optional(Type.Boolean()),
    ...PageQuery,
  },
  { additionalProperties: false },
)
export type ListConnectorsInput = Static<typeof ListConnectorsQuery>

export const ConnectorPage = Page(Type.Unsafe<Connector>({ $ref: 'Connector#' }), 'A page of connectors')
