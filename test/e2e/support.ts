import { mkdtemp, rm } from 'node:fs/promises'
import { expect } from 'vitest'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { MixedLoad, Totals } from '../../src/sandbox/load.ts'
import { Rig, type RigOptions } from '../../src/sandbox/rig.ts'
import { createScratchPostgresDatabase, externalTestUrl } from '../support/database.ts'

export { externalTestUrl }

/**
 * A Rig (the stand-in, a webhook receiver, real Mailgate processes) on embedded PGlite, or
 * with TEST_DATABASE_URL on a new PostgreSQL database; `close` stops it all and removes it.
 * Every process's log is printed when the test failed, since it is all there is to go by.
 */
export async function startRig(options: Omit<RigOptions, 'dir' | 'databaseUrl'> = {}): Promise<{ rig: Rig; close(failed?: boolean): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgate-e2e-'))
  const database = externalTestUrl ? await createScratchPostgresDatabase(externalTestUrl) : undefined
  const rig = new Rig({ ...options, dir, databaseUrl: database?.url, env: { SEND_RATE_PER_MINUTE: '6000', ...options.env } })
  const close = async (failed = false) => {
    if (failed) for (const instance of rig.instances) console.error(`--- ${instance.url} log ---\n${instance.logTail(80)}`)
    await rig.stop()
    await database?.drop()
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await rig.start()
  } catch (error) {
    await close(true)
    throw error
  }
  return { rig, close }
}

/** Polls `check` until it answers something truthy; throws with `what` when time runs out. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

/**
 * The totals a run must end with: every message asked for sent exactly once, or uncertain
 * with a reason (rare: with Mail.ReadWrite every send goes through a draft, which recovery
 * can check); every mail processed once with one work item request; every outcome's one
 * event in the feed and at the webhook; no API error; no server exit nobody asked for.
 */
export function expectNothingLostOrDoubled(rig: Rig, load: MixedLoad, totals: Totals, count: number): void {
  expect(load.errors).toEqual([])
  expect(totals.send).toMatchObject({ accepted: count, notAccepted: 0, extraRecords: 0, lost: 0, doubled: 0, uncertainWithoutReason: 0 })
  expect((totals.send.byStatus.sent ?? 0) + (totals.send.byStatus.uncertain ?? 0)).toBe(count)
  expect(totals.send.byStatus.uncertain ?? 0).toBeLessThanOrEqual(2)
  expect(totals.receive).toMatchObject({ delivered: count, processedOnce: count, lost: 0, doubled: 0, workItemRequests: count, duplicateWorkItemRequests: 0 })
  expect(totals.events).toMatchObject({ missingFromFeed: 0, duplicatedInFeed: 0, missingAtWebhook: 0 })
  expect(rig.unexpectedExits).toEqual([])
}
