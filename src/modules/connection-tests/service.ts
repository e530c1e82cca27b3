import type { ConnectionTestResult, TestedResource } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { ConflictError } from '../../lib/errors.ts'
import type { Actor, AuditService } from '../audit/service.ts'
import type { ConnectionTestRepository, ConnectionTestRow, ShownResource, ShownTests } from './repository.ts'

/** A change to the connection settings of a resource in use, before they were tested. */
export class CandidateTestRequiredError extends ConflictError {
  override readonly code = 'CANDIDATE_TEST_REQUIRED'
  override readonly title = 'Test the new connection settings first'
}

export class EnableGateError extends ConflictError {
  override readonly code: 'INTEGRATION_NOT_VERIFIED' | 'CONNECTION_TEST_REQUIRED' | 'CONNECTION_TEST_FAILED'
  override readonly title: string

  constructor(code: EnableGateError['code'], detail: string) {
    super(detail)
    this.code = code
    this.title = {
      INTEGRATION_NOT_VERIFIED: 'The integration is not verified',
      CONNECTION_TEST_REQUIRED: 'Test this configuration first',
      CONNECTION_TEST_FAILED: 'The latest test of this configuration failed',
    }[code]
  }
}

export interface TestRecord {
  id: string
  resourceType: TestedResource
  resourceId: string
  configHash: string
  candidate: boolean
  outcome: ConnectionTestResult
}

export function failedStep(result: ConnectionTestResult) {
  return result.steps.find((step) => !step.ok && !step.skipped)
}

/** The tests a resource's presentation shows: its newest, and the newest of its current configuration. */
export type TestsOf = Pick<ShownTests, 'latest' | 'ofCurrent'>

/** Storing tests and judging the enable gate, the same way for every gated resource. */
export class ConnectionTests {
  private readonly repository: ConnectionTestRepository
  private readonly audit: AuditService
  private readonly shownTests: ReturnType<ConnectionTestRepository['prepareShown']>

  constructor(db: Db, repository: ConnectionTestRepository, audit: AuditService) {
    this.repository = repository
    this.audit = audit
    this.shownTests = repository.prepareShown(db)
  }

  /** Stores a test and its audit record; call inside the caller's transaction. */
  async record(tx: Db, actor: Actor, test: TestRecord): Promise<ConnectionTestRow> {
    const stored = await this.repository.insert(tx, {
      id: test.id,
      resourceType: test.resourceType,
      resourceId: test.resourceId,
      configHash: test.configHash,
      candidate: test.candidate,
      ok: test.outcome.ok,
      result: test.outcome,
      actorKeyId: actor.keyId,
    })
    await this.audit.record(tx, actor, {
      action: 'test',
      resourceType: test.resourceType,
      resourceId: test.resourceId,
      details: { ok: test.outcome.ok, candidate: test.candidate, failedStep: failedStep(test.outcome)?.code ?? null },
    })
    return stored
  }

  /** The newest test of exactly this configuration of a resource, candidate or not. */
  async latestOf(executor: Db, resourceType: TestedResource, resourceId: string, configHash: string): Promise<ConnectionTestRow | undefined> {
    return this.repository.latestOf(executor, resourceType, resourceId, configHash)
  }

  /** For each resource, the newest test of the given configuration, in one statement. */
  async latestOfEach(executor: Db, resourceType: TestedResource, resources: { resourceId: string; configHash: string }[]): Promise<Map<string, ConnectionTestRow>> {
    return this.repository.latestOfEach(executor, resourceType, resources)
  }

  /**
   * For resources of any types, each with the hash of its current configuration, the tests
   * their presentation shows, in one statement; keyed by `type:id`. Reads committed state.
   */
  async shown(resources: ShownResource[]): Promise<Map<string, TestsOf>> {
    const rows = await this.shownTests(resources)
    return new Map(rows.map((row) => [`${row.resourceType}:${row.resourceId}`, { latest: row.latest, ofCurrent: row.ofCurrent }]))
  }

  /** shown() for resources of one type, keyed by id. */
  async testsOf(resourceType: TestedResource, resources: { resourceId: string; configHash: string }[]): Promise<Map<string, TestsOf>> {
    const shown = await this.shown(resources.map((resource) => ({ resourceType, ...resource, latest: true })))
    return new Map(resources.map(({ resourceId }) => [resourceId, shown.get(`${resourceType}:${resourceId}`)!]))
  }

  /** A resource's tests go with it. */
  /** Whether a test with this id was run: the id its test message carries (ingest checks it). */
  async exists(executor: Db, id: string): Promise<boolean> {
    return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id) && this.repository.exists(executor, id)
  }

  async deleteFor(executor: Db, resourceType: TestedResource, resourceId: string): Promise<void> {
    await this.repository.deleteFor(executor, resourceType, resourceId)
  }

  /**
   * The gate: the latest test of exactly this configuration must have succeeded. `testPath`
   * is the endpoint to run, named in the problem so the caller knows what to do.
   */
  async requirePassed(tx: Db, resourceType: TestedResource, resourceId: string, configHash: string, testPath: string): Promise<ConnectionTestRow> {
    const test = await this.repository.latestOf(tx, resourceType, resourceId, configHash)
    if (!test) {
      throw new EnableGateError('CONNECTION_TEST_REQUIRED', `This configuration has not been tested. Run POST ${testPath}, then enable it.`)
    }
    if (!test.ok) {
      const failed = failedStep(test.result)
      throw new EnableGateError(
        'CONNECTION_TEST_FAILED',
        `The latest test of this configuration failed${failed ? ` at ${failed.name} (${failed.code})` : ''}. Fix it, run POST ${testPath} again, then enable.`,
      )
    }
    return test
  }
}
