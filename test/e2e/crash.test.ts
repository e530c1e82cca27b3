import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { killRepeatedly, MixedLoad, percentile } from '../../src/sandbox/load.ts'
import type { Rig } from '../../src/sandbox/rig.ts'
import { externalTestUrl, startRig } from './support.ts'

// One process on its embedded database, as `npm start` runs it. On PostgreSQL the kills are
// in instances.test.ts, among three processes.
if (externalTestUrl) console.warn('test/e2e/crash.test.ts: runs on the embedded database (the PGlite pass); on PostgreSQL, instances.test.ts kills 20 times among three processes. Skipped.')

let rig: Rig
let close: ((failed?: boolean) => Promise<void>) | undefined
let failed = true

beforeAll(async () => {
  if (!externalTestUrl) ({ rig, close } = await startRig({ customers: 4 }))
})
afterAll(async () => close?.(failed))

describe.skipIf(externalTestUrl)('kill -9, one process on embedded PGlite', () => {
  it('the server killed 20 times at random moments under sustained send and receive load, and started again each time: every message sent exactly once, every mail processed once, no duplicate work, no lost event', async () => {
    const load = new MixedLoad(rig, { sends: 120, arrivals: 120, perSecond: 2 })
    const [, { kills, waitsMs }] = await Promise.all([load.run(), killRepeatedly(rig, { kills: 20, minMs: 500, maxMs: 2_500 })])
    await load.settle()
    const totals = await load.totals()
    console.log(`kill -9 totals (PGlite, ${kills} kills after ${waitsMs.join('/')} ms, ${load.retries} client retries, API p99 ${percentile(load.latencies, 99).toFixed(0)} ms): ${JSON.stringify(totals)}`)
    expect(kills).toBe(20)
    expect(rig.instances[0]!.starts).toBe(21)
    expect(load.errors).toEqual([])
    expect(totals.send).toMatchObject({ accepted: 120, notAccepted: 0, extraRecords: 0, lost: 0, doubled: 0, uncertainWithoutReason: 0 })
    // Exactly once, or marked uncertain with its reason: nothing else is an acceptable end.
    expect((totals.send.byStatus.sent ?? 0) + (totals.send.byStatus.uncertain ?? 0)).toBe(120)
    // With Mail.ReadWrite every send goes through a draft, which recovery can always check: uncertainty should be rare.
    expect(totals.send.byStatus.uncertain ?? 0).toBeLessThanOrEqual(2)
    expect(totals.receive).toMatchObject({ delivered: 120, processedOnce: 120, lost: 0, doubled: 0, workItemRequests: 120, duplicateWorkItemRequests: 0 })
    expect(totals.events).toMatchObject({ missingFromFeed: 0, duplicatedInFeed: 0, missingAtWebhook: 0 })
    expect(rig.unexpectedExits).toEqual([])
    failed = false
  })
})
