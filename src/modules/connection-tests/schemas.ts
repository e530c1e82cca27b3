import { Type, type Static } from '@sinclair/typebox'
import { DateTime } from '../../lib/schemas.ts'
import type { ConnectionTestRow } from './repository.ts'

export const TestStepSchema = Type.Object({
  name: Type.String({ description: 'The step, e.g. token_acquired, mailbox_reachable, folders_resolved' }),
  ok: Type.Boolean(),
  skipped: Type.Optional(Type.Boolean()),
  code: Type.Optional(Type.String({ description: 'Stable error code when the step failed' })),
  message: Type.String(),
  hint: Type.Optional(Type.String({ description: 'What to do about it' })),
})

export const TestResultSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    ok: Type.Boolean(),
    testedAt: DateTime,
    candidate: Type.Boolean({ description: 'The test ran on proposed changes, not the saved configuration' }),
    matchesCurrentConfiguration: Type.Boolean({ description: 'The tested configuration is the saved one now' }),
    steps: Type.Array(TestStepSchema),
    roles: Type.Array(Type.String(), { description: 'Application permissions in the token (roles claim)' }),
  },
  { $id: 'ConnectionTestResult', description: 'Outcome of a connection test' },
)
export type TestResult = Static<typeof TestResultSchema>

/**
 * The latest test or null, spelled as a type list rather than `anyOf [ConnectionTestResult,
 * null]`: the response serializer then tells the two apart by type, where an anyOf makes it
 * validate every test in a list just to choose how to write it.
 */
const { $id: _id, ...testResultFields } = TestResultSchema
export const LastTest = Type.Unsafe<TestResult | null>({ ...testResultFields, type: ['object', 'null'], description: 'The latest connection test, or null before the first' })

export function presentTest(test: Pick<ConnectionTestRow, 'id' | 'ok' | 'testedAt' | 'candidate' | 'configHash' | 'result'>, currentHash: string): TestResult {
  return {
    id: test.id,
    ok: test.ok,
    testedAt: test.testedAt.toISOString(),
    candidate: test.candidate,
    matchesCurrentConfiguration: test.configHash === currentHash,
    steps: test.result.steps,
    roles: test.result.roles ?? [],
  }
}
