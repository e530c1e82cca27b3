import { boolean, index, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'

export interface TestStep {
  name: string
  ok: boolean
  /** Not run because an earlier step failed. */
  skipped?: boolean
  code?: string
  message: string
  hint?: string
}

export interface ConnectionTestResult {
  ok: boolean
  steps: TestStep[]
  roles?: string[]
  /** What the test found out, e.g. the folder ids of an incoming connector. */
  facts?: Record<string, unknown>
}

export const TESTED_RESOURCES = ['integration', 'connector', 'route'] as const
export type TestedResource = (typeof TESTED_RESOURCES)[number]

/**
 * Every connection test of an integration, connector or outgoing route, kept: the enable
 * gate and candidate changes are judged from it. Removed with the resource it tested.
 */
export const connectionTests = pgTable(
  'connection_tests',
  {
    id: uuid().primaryKey(),
    resourceType: text().$type<TestedResource>().notNull(),
    resourceId: uuid().notNull(),
    testedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    /** Hash of the connection settings that were tested. */
    configHash: text().notNull(),
    /** True when the test ran on proposed changes rather than the saved configuration. */
    candidate: boolean().notNull(),
    ok: boolean().notNull(),
    result: jsonb().$type<ConnectionTestResult>().notNull(),
    actorKeyId: uuid(),
  },
  (table) => [index('connection_tests_lookup_idx').on(table.resourceType, table.resourceId, table.configHash, table.id)],
)
