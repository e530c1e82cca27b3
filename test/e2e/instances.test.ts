import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { killRepeatedly, MixedLoad, percentile } from '../../src/sandbox/load.ts'
import type { Rig } from '../../src/sandbox/rig.ts'
import { expectNothingLostOrDoubled, externalTestUrl, startRig } from './support.ts'

if (!externalTestUrl) {
  console.warn('test/e2e/instances.test.ts: three processes need one PostgreSQL database (embedded PGlite is one process\'s); set TEST_DATABASE_URL to run it. Skipped.')
}

let rig: Rig | undefined
let close: ((failed?: boolean) => Promise<void>) | undefined
let failed = true

beforeAll(async () => {
  if (externalTestUrl) ({ rig, close } = await startRig({ instances: 3, customers: 4 }))
})
afterAll(async () => close?.(failed))

describe.skipIf(!externalTestUrl)('three server processes on one PostgreSQL database', () => {
  it('share the load, and with 20 kill -9s among them end with the same totals: every message sent exactly once, every mail processed once, no duplicate work, no lost event', async () => {
    const load = new MixedLoad(rig!, { sends: 150, arrivals: 150, perSecond: 3 })
    const [, { kills, waitsMs }] = await Promise.all([load.run(), killRepeatedly(rig!, { kills: 20, minMs: 500, maxMs: 2_500 })])
    await load.settle()
    const totals = await load.totals()
    const sentBy = rig!.instances.map((instance) => instance.log().split('"msg":"message sent"').length - 1)
    console.log(`three instances totals (${kills} kills after ${waitsMs.join('/')} ms, ${load.retries} client retries, API p99 ${percentile(load.latencies, 99).toFixed(0)} ms, sent by each instance ${sentBy.join('/')}): ${JSON.stringify(totals)}`)
    expect(kills).toBe(20)
    // Every instance took a share of the sending.
    expect(sentBy.every((count) => count > 0)).toBe(true)
    expectNothingLostOrDoubled(rig!, load, totals, 150)
    failed = false
  })
})
