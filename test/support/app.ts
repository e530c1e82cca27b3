import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { buildApp, type App, type AppOptions } from '../../src/app.ts'
import { TokenProvider } from '../../src/graph/token-provider.ts'
import { SecretBox } from '../../src/lib/secret-box.ts'
import { createLogger } from '../../src/logger.ts'
import type { DispatcherPluginOptions } from '../../src/modules/outbound/dispatcher-plugin.ts'
import type { Scope } from '../../src/modules/api-keys/scopes.ts'
import { createTestDatabase, type TestDatabase } from './database.ts'

export interface TestApp {
  app: App
  db: TestDatabase
  adminKey: string
  /** Every log line the app wrote, for assertions about what is (not) logged. */
  logs: string[]
  keyWith(...scopes: Scope[]): Promise<string>
  close(): Promise<void>
}

export const TEST_ADMIN_KEY = 'test-admin-key-0123456789abcdefghijklmnop'

/** buildApp on a fresh database, with a bootstrapped admin key and captured logs. */
export function randomSecretsKey(): string {
  return randomBytes(32).toString('base64')
}

export async function buildTestApp(
  options: {
    bodyLimit?: number
    extend?: (app: App) => void
    secretBox?: SecretBox
    tokenProvider?: TokenProvider
    database?: TestDatabase
    connectorFailureThreshold?: number
    messageSizeLimit?: number
    dispatcher?: DispatcherPluginOptions
    graphql?: { introspection?: boolean }
    ingest?: AppOptions['ingest']
    sync?: AppOptions['sync']
    clock?: AppOptions['clock']
    webhooks?: AppOptions['webhooks']
    instanceId?: string
  } = {},
): Promise<TestApp> {
  const db = options.database ?? (await createTestDatabase())
  const logs: string[] = []
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(String(chunk))
      callback()
    },
  })
  const app = await buildApp({
    database: db.database,
    secretBox: options.secretBox ?? new SecretBox(randomSecretsKey()),
    tokenProvider: options.tokenProvider ?? new TokenProvider({ timeoutMs: 2_000 }),
    connectorFailureThreshold: options.connectorFailureThreshold,
    messageSizeLimit: options.messageSizeLimit,
    logger: createLogger('info', sink),
    bodyLimit: options.bodyLimit,
    collectDefaultMetrics: false,
    dispatcher: options.dispatcher,
    graphql: options.graphql,
    ingest: options.ingest,
    sync: options.sync,
    clock: options.clock,
    webhooks: options.webhooks,
    instanceId: options.instanceId,
  })
  options.extend?.(app)
  await app.services.apiKeys.ensureInitialAdminKey(TEST_ADMIN_KEY)
  await app.ready()
  return {
    app,
    db,
    adminKey: TEST_ADMIN_KEY,
    logs,
    async keyWith(...scopes) {
      const { key } = await app.services.apiKeys.create({ keyId: null }, { name: `test ${scopes.join(' ')}`, scopes })
      return key
    },
    async close() {
      await app.close()
      await db.drop()
    },
  }
}

export function bearer(key: string) {
  return { authorization: `Bearer ${key}` }
}

export async function graphql(
  app: App,
  key: string | null,
  query: string,
  variables?: Record<string, unknown>,
) {
  const response = await app.inject({
    method: 'POST',
    url: '/graphql',
    headers: key ? bearer(key) : {},
    payload: { query, variables },
  })
  return { status: response.statusCode, body: response.json() as { data: any; errors?: any[] } }
}
