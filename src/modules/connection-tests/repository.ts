import { and, desc, eq, inArray, sql } from 'drizzle-orm'
import { connectionTests, type TestedResource } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'

export type ConnectionTestRow = typeof connectionTests.$inferSelect
export type NewConnectionTest = typeof connectionTests.$inferInsert

/** A resource whose tests are to be shown, and the hash of its current configuration. */
export interface ShownResource {
  resourceType: TestedResource
  resourceId: string
  configHash: string
  /** Whether its newest test is wanted too, or only whether its current configuration passed. */
  latest: boolean
}

export interface ShownTests {
  resourceType: TestedResource
  resourceId: string
  latest: Pick<ConnectionTestRow, 'id' | 'ok' | 'testedAt' | 'candidate' | 'configHash' | 'result'> | undefined
  /** The newest test of the current configuration, if there is one. */
  ofCurrent: { ok: boolean; roles: string[] } | undefined
}

/** The stored tests every gated resource (integration, connector, outgoing route) shares. */
export class ConnectionTestRepository {
  /**
   * For any number of resources of any types, in one statement prepared once for `db`: the
   * newest test of each (when asked) and the newest test of its current configuration.
   */
  prepareShown(db: Db) {
    const resource = sql`r`
    const latest = db
      .select({
        id: connectionTests.id,
        ok: connectionTests.ok,
        testedAt: connectionTests.testedAt,
        candidate: connectionTests.candidate,
        configHash: connectionTests.configHash,
        result: connectionTests.result,
      })
      .from(connectionTests)
      .where(sql`${resource}.latest and ${connectionTests.resourceType} = ${resource}.type and ${connectionTests.resourceId} = ${resource}.id`)
      .orderBy(desc(connectionTests.id))
      .limit(1)
      .as('latest')
    const current = db
      .select({ currentOk: sql<boolean>`${connectionTests.ok}`.as('current_ok'), roles: sql<string[] | null>`${connectionTests.result}->'roles'`.as('current_roles') })
      .from(connectionTests)
      .where(
        sql`${connectionTests.resourceType} = ${resource}.type and ${connectionTests.resourceId} = ${resource}.id and ${connectionTests.configHash} = ${resource}.hash`,
      )
      .orderBy(desc(connectionTests.id))
      .limit(1)
      .as('current')
    const query = db
      .select({
        resourceType: sql<TestedResource>`${resource}.type`,
        resourceId: sql<string>`${resource}.id`,
        latestId: latest.id,
        latestOk: latest.ok,
        latestTestedAt: latest.testedAt,
        latestCandidate: latest.candidate,
        latestConfigHash: latest.configHash,
        latestResult: latest.result,
        currentOk: current.currentOk,
        currentRoles: current.roles,
      })
      .from(sql`json_to_recordset(${sql.placeholder('resources')}::json) as ${resource}(type text, id uuid, hash text, latest boolean)`)
      .leftJoinLateral(latest, sql`true`)
      .leftJoinLateral(current, sql`true`)
      .prepare('shown_connection_tests')
    return async (resources: ShownResource[]): Promise<ShownTests[]> => {
      if (resources.length === 0) return []
      const rows = await query.execute({
        resources: JSON.stringify(resources.map((r) => ({ type: r.resourceType, id: r.resourceId, hash: r.configHash, latest: r.latest }))),
      })
      return rows.map((row) => ({
        resourceType: row.resourceType,
        resourceId: row.resourceId,
        latest: row.latestId
          ? { id: row.latestId, ok: row.latestOk!, testedAt: row.latestTestedAt!, candidate: row.latestCandidate!, configHash: row.latestConfigHash!, result: row.latestResult! }
          : undefined,
        ofCurrent: row.currentOk === null ? undefined : { ok: row.currentOk, roles: row.currentRoles ?? [] },
      }))
    }
  }

  async insert(executor: Db, row: NewConnectionTest): Promise<ConnectionTestRow> {
    const [created] = await executor.insert(connectionTests).values(row).returning()
    return created!
  }

  /** The newest test of exactly this configuration of a resource, candidate or not. */
  async latestOf(executor: Db, resourceType: TestedResource, resourceId: string, configHash: string) {
    const [row] = await executor
      .select()
      .from(connectionTests)
      .where(
        and(
          eq(connectionTests.resourceType, resourceType),
          eq(connectionTests.resourceId, resourceId),
          eq(connectionTests.configHash, configHash),
        ),
      )
      .orderBy(desc(connectionTests.id))
      .limit(1)
    return row
  }

  /** latestOf for many resources at once, keyed by resource id. */
  async latestOfEach(executor: Db, resourceType: TestedResource, pairs: { resourceId: string; configHash: string }[]) {
    if (pairs.length === 0) return new Map<string, ConnectionTestRow>()
    const rows = await executor
      .selectDistinctOn([connectionTests.resourceId, connectionTests.configHash])
      .from(connectionTests)
      .where(
        and(
          eq(connectionTests.resourceType, resourceType),
          inArray(connectionTests.resourceId, pairs.map((p) => p.resourceId)),
          inArray(connectionTests.configHash, pairs.map((p) => p.configHash)),
        ),
      )
      .orderBy(connectionTests.resourceId, connectionTests.configHash, desc(connectionTests.id))
    const wanted = new Map(pairs.map((p) => [p.resourceId, p.configHash]))
    return new Map(rows.filter((row) => wanted.get(row.resourceId) === row.configHash).map((row) => [row.resourceId, row]))
  }

  async exists(executor: Db, id: string): Promise<boolean> {
    const rows = await executor.select({ id: connectionTests.id }).from(connectionTests).where(eq(connectionTests.id, id)).limit(1)
    return rows.length > 0
  }

  async deleteFor(executor: Db, resourceType: TestedResource, resourceId: string): Promise<void> {
    await executor
      .delete(connectionTests)
      .where(and(eq(connectionTests.resourceType, resourceType), eq(connectionTests.resourceId, resourceId)))
  }
}
