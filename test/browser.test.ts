import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from './support/app.ts'

/**
 * The two web pages, in a real browser with every request outside loopback refused, as on a
 * server without internet access. Uses Debian's Chromium (.ci/run installs it).
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const available = existsSync(CHROMIUM)
if (!available) console.warn(`NOTICE: ${CHROMIUM} not found; the offline browser tests are skipped (apt-get install chromium, or set CHROMIUM_PATH).`)

let t: TestApp
let browser: Browser
let base: string
const blocked: string[] = []

describe.skipIf(!available)('web pages offline, in headless Chromium', () => {
  beforeAll(async () => {
    t = await buildTestApp()
    base = await t.app.listen({ port: 0, host: '127.0.0.1' })
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
  })
  afterAll(async () => {
    await browser?.close()
    await t?.close()
  })

  async function offlinePage() {
    const context = await browser.newContext()
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url())
      if (url.hostname === '127.0.0.1') return route.continue()
      blocked.push(url.href)
      return route.abort('internetdisconnected')
    })
    return context.newPage()
  }

  it('/docs renders the operations, and Try it out with an API key gets a real answer', async () => {
    const page = await offlinePage()
    await page.goto(`${base}/docs`)
    await page.locator('.opblock').first().waitFor({ timeout: 20_000 })
    expect(await page.locator('.opblock').count()).toBeGreaterThan(25)

    await page.locator('.btn.authorize').first().click()
    await page.locator('.modal-ux input').first().fill(t.adminKey)
    await page.locator('.modal-ux .btn.authorize').first().click()
    await page.locator('.modal-ux .btn-done').first().click()

    const operation = page.locator('[id$="-listApiKeys"]')
    await operation.locator('.opblock-summary').click()
    await operation.locator('.try-out__btn').click()
    await operation.locator('.execute').click()
    const status = operation.locator('.live-responses-table .response .response-col_status').first()
    await status.waitFor({ timeout: 20_000 })
    expect((await status.innerText()).trim()).toBe('200')
    const answer = await operation.locator('.live-responses-table').first().innerText()
    expect(answer).toContain('"scopes"')
    expect(answer).toContain('"admin"')
    expect(blocked).toEqual([])
  }, 60_000)

  it('/graphiql renders and runs { viewer { scopes } } with the key in a header', async () => {
    const page = await offlinePage()
    await page.goto(`${base}/graphiql`)
    await page.locator('.graphiql-container').waitFor({ timeout: 20_000 })
    await page.getByText('Headers', { exact: true }).click()
    await page.evaluate((key) => {
      // Runs in the page; the test project has no DOM types.
      const page = globalThis as unknown as { document: { querySelectorAll(selector: string): Iterable<unknown> } }
      const editors = [...page.document.querySelectorAll('.CodeMirror')].map((element) => (element as { CodeMirror: { getValue(): string; setValue(value: string): void } }).CodeMirror)
      const headers = editors.find((editor) => editor.getValue().includes('Authorization'))
      if (!headers) throw new Error('no headers editor')
      headers.setValue(JSON.stringify({ Authorization: `Bearer ${key}` }))
    }, t.adminKey)
    await page.locator('.graphiql-execute-button').click()
    const result = page.locator('.graphiql-response')
    await expect.poll(async () => result.innerText(), { timeout: 20_000 }).toContain('ADMIN')
    expect(await result.innerText()).toContain('"scopes"')
    expect(blocked).toEqual([])
  }, 60_000)
})
