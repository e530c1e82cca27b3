import type { App } from '../src/app.ts'

/** The admin key the in-process benchmarks bootstrap their app with. */
export const ADMIN_KEY = 'bench-admin-key-0123456789abcdefghijklmnopqrstuv'

/** An admin request through inject; anything but a success stops the benchmark. */
export async function adminCall(app: App, method: 'POST' | 'GET', url: string, payload?: object) {
  const response = await app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN_KEY}` }, payload })
  if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`)
  return response.json()
}
