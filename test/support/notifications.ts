import type { FastifyInstance } from 'fastify'
import type { FakeMicrosoft } from './fake-microsoft.ts'

/**
 * Graph reaches Mailgate's public URL (`base`): here, the app itself through `inject`. A
 * request for another origin fails the test's expectations by throwing. `drop` answers a
 * request 202 without passing it on, as a notification lost on the way would be.
 */
export function routeNotificationsToApp(fake: FakeMicrosoft, app: () => FastifyInstance, base: string, drop: (url: URL) => boolean = () => false): void {
  fake.setNotificationTransport(async (request) => {
    const url = new URL(request.url)
    if (url.origin !== base) throw new Error(`Graph called ${url.origin}, not PUBLIC_BASE_URL ${base}`)
    if (drop(url)) return { status: 202, body: '' }
    const response = await app().inject({ method: 'POST', url: url.pathname + url.search, headers: request.headers, payload: request.body })
    return { status: response.statusCode, contentType: String(response.headers['content-type'] ?? ''), body: response.body }
  })
}
