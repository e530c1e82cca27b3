import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { buildApp } from '../app.ts'
import { openEmbeddedDatabase } from '../database/index.ts'
import { SecretBox } from '../lib/secret-box.ts'
import { renderOpenApi } from '../openapi.ts'

/** Writes openapi/openapi.json from the app's routes; the test suite fails when it is stale. */
const target = fileURLToPath(new URL('../../openapi/openapi.json', import.meta.url))
const database = await openEmbeddedDatabase('memory://')
const app = await buildApp({
  database,
  secretBox: new SecretBox(randomBytes(32).toString('base64')),
  collectDefaultMetrics: false,
})
await app.ready()
await writeFile(target, renderOpenApi(app))
await app.close()
await database.close()
console.log(`wrote ${target}`)
