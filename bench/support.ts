import { buildApp, type App, type AppOptions } from '../src/app.ts'
import type { Database } from '../src/database/index.ts'
import { TokenProvider } from '../src/graph/token-provider.ts'
import { SecretBox } from '../src/lib/secret-box.ts'
import { createLogger } from '../src/logger.ts'
import { randomSecretsKey } from '../test/support/app.ts'

/** The admin key the in-process benchmarks bootstrap their app with. */
export const ADMIN_KEY = 'bench-admin-key-0123456789abcdefghijklmnopqrstuv'

/** An admin request through inject; anything but a success stops the benchmark. */
export async function adminCall(app: App, method: 'POST' | 'GET', url: string, payload?: object) {
  const response = await app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN_KEY}` }, payload })
  if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`)
  return response.json()
}

/** Mailgate on a migrated `database`, as the in-process benchmarks run it: warn-level logs, the admin key bootstrapped, ready. */
export async function benchApp(database: Database, options: Partial<AppOptions> = {}): Promise<App> {
  const app = await buildApp({
    database,
    secretBox: new SecretBox(randomSecretsKey()),
    tokenProvider: new TokenProvider(),
    logger: createLogger('warn'),
    collectDefaultMetrics: false,
    dispatcher: { autostart: false },
    ...options,
  })
  await app.services.apiKeys.ensureInitialAdminKey(ADMIN_KEY)
  await app.ready()
  return app
}
