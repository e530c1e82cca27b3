import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { killRepeatedly, MixedLoad, percentile } from '../../src/sandbox/load.ts'
import type { Rig } from '../../src/sandbox/rig.ts'
import { expectNothingLostOrDoubled, externalTestUrl, startRig } from './support.ts'

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
    expectNothingLostOrDoubled(rig, load, totals, 120)
    failed = false
  })
})
