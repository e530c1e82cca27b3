import { CRITICAL_STRINGS, HOSTILE_STRINGS, RAW_BODIES, Random, complete, mutate, percentEncode, plausible, stringPaths, withLeaf } from './fuzz.ts'

/** Ids of existing resources by kind, so that some requests reach past "not found". */
export type FuzzIds = Record<'integration' | 'connector' | 'route' | 'message' | 'apiKey' | 'inbound' | 'blockedAddress', string[]>

export interface FuzzRequest {
  operation: Operation
  url: string
  payload?: string | Buffer
  contentType?: string
  headers: Record<string, string>
}

export interface Operation {
  method: string
  path: string
  operationId: string
  parameters: { name: string; in: string; required?: boolean; schema: Record<string, unknown> }[]
  body: Record<string, unknown> | undefined
  bodyType: string | undefined
  /** The multipart/form-data schema, where the operation also takes one. */
  multipart: Record<string, unknown> | undefined
}

export function operationsOf(document: { paths: Record<string, Record<string, Record<string, unknown>>> }): Operation[] {
  const operations: Operation[] = []
  for (const [path, methods] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const content = (operation.requestBody as { content?: Record<string, { schema: Record<string, unknown> }> } | undefined)?.content
      const bodyType = content ? Object.keys(content)[0] : undefined
      operations.push({
        method: method.toUpperCase(),
        path,
        operationId: String(operation.operationId),
        parameters: (operation.parameters as Operation['parameters']) ?? [],
        body: bodyType ? content![bodyType]!.schema : undefined,
        bodyType,
        multipart: content?.['multipart/form-data']?.schema,
      })
    }
  }
  // Deletions last, so earlier operations still find the seeded resources.
  return operations.sort((a, b) => Number(a.method === 'DELETE') - Number(b.method === 'DELETE'))
}

function idFor(ids: FuzzIds, path: string, random: Random): string {
  const kind = path.includes('/inbound')
    ? 'inbound'
    : path.includes('/blocked-addresses')
      ? 'blockedAddress'
      : path.includes('/integrations')
        ? 'integration'
        : path.includes('/connectors')
          ? 'connector'
          : path.includes('/routes')
            ? 'route'
            : path.includes('/messages')
              ? 'message'
              : 'apiKey'
  const roll = random.next()
  if (roll < 0.5 && ids[kind]!.length > 0) return random.pick(ids[kind]!)
  if (roll < 0.7) return '0190f5e0-0000-7000-8000-000000000000'
  return percentEncode(String(random.pick(HOSTILE_STRINGS))) || '%20'
}

function queryString(operation: Operation, random: Random): string {
  const parts: string[] = []
  for (const parameter of operation.parameters.filter((p) => p.in === 'query')) {
    if (!parameter.required && random.chance(0.5)) continue
    const value = random.chance(0.6) ? random.pick(HOSTILE_STRINGS) : String(plausible(parameter.schema as never, random))
    parts.push(`${percentEncode(parameter.name)}=${percentEncode(value)}`)
  }
  if (random.chance(0.1)) parts.push('unknown=1', 'limit=1&limit=2')
  if (random.chance(0.05)) parts.push('since=%00', 'cursor=%E0%A4%A')
  return parts.length > 0 ? `?${parts.join('&')}` : ''
}

function headersFor(adminKey: string, random: Random): Record<string, string> {
  const roll = random.next()
  const headers: Record<string, string> =
    roll < 0.8 ? { authorization: `Bearer ${adminKey}` } : roll < 0.9 ? {} : { authorization: random.pick(['Bearer', 'Basic abc', `Bearer ${'x'.repeat(600)}`, 'Bearer mgk_\u00ff']) }
  if (random.chance(0.1)) headers['idempotency-key'] = random.pick(['k1', 'x'.repeat(300), 'a b', '%00'])
  if (random.chance(0.05)) headers['x-request-id'] = random.pick(['../../x', 'a'.repeat(500), 'ok-id'])
  return headers
}

type Payload = { payload?: string | Buffer; contentType?: string }

function bodyFor(operation: Operation, random: Random, sender: string | undefined): Payload {
  if (random.chance(0.15) || (!operation.body && random.chance(0.3))) {
    const raw = random.pick(RAW_BODIES)
    return { payload: raw.payload, contentType: raw.contentType }
  }
  if (!operation.body) return {}
  if (operation.multipart && random.chance(0.4)) return multipartBody(operation.multipart, random, sender)
  const value = mutate(plausible(operation.body as never, random), random)
  return { payload: JSON.stringify(value) ?? 'null', contentType: 'application/json' }
}

const BOUNDARY = 'fuzzboundary'

/**
 * A multipart body: half the time a hostile message part, otherwise a plausible one (so the
 * server reads on) followed by file parts whose names, filenames and types are hostile.
 */
function multipartBody(schema: Record<string, unknown>, random: Random, sender: string | undefined): Payload {
  const plain = sender
    ? { from: sender, to: ['customer@fabrikam.com'], subject: 'files', body: { contentType: 'text', content: 'see attached' } }
    : plausible((schema as { properties: { message: never } }).properties.message, random)
  const message = random.chance(0.5) ? mutate(plain, random) : plain
  const files = Array.from({ length: random.int(3) }, () => {
    const name = random.pick(['attachment', 'attachment', 'inline:logo', `inline:${random.pick(HOSTILE_STRINGS)}`, 'message', 'other'])
    const filename = random.chance(0.5) ? `filename*=utf-8''${percentEncode(random.pick(HOSTILE_STRINGS))}` : `filename="${random.pick(['a.txt', 'x'.repeat(300), ''])}"`
    const type = random.pick(['text/plain', 'x', '\u0001', 'image/png; name="a\u0000"'])
    return `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"; ${filename}\r\nContent-Type: ${type}\r\n\r\nfile\r\n`
  })
  return {
    payload: Buffer.from(
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="message"\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(message)}\r\n${files.join('')}--${BOUNDARY}--\r\n`,
    ),
    contentType: `multipart/form-data; boundary=${BOUNDARY}`,
  }
}

/**
 * Deterministic coverage on top of the random requests: every query parameter and every
 * string field of the body, and (given a sender) every field of a file part, in turn, set to
 * each value that breaks SQL or a header.
 */
function sweep(operation: Operation, ids: FuzzIds, adminKey: string, random: Random, sender: string | undefined): FuzzRequest[] {
  const url = (query = '') => operation.path.replace(/\{[^}]+\}/g, () => idFor(ids, operation.path, random).replace(/%.*/, '0190f5e0-0000-7000-8000-000000000000')) + query
  const requests: FuzzRequest[] = []
  for (const parameter of operation.parameters.filter((p) => p.in === 'query')) {
    for (const value of CRITICAL_STRINGS) requests.push({ operation, url: url(`?${parameter.name}=${percentEncode(value)}`), headers: { authorization: `Bearer ${adminKey}` } })
  }
  if (operation.multipart && sender) {
    const message = JSON.stringify({ from: sender, to: ['customer@fabrikam.com'], subject: 'files', body: { contentType: 'text', content: 'see attached' } })
    for (const value of CRITICAL_STRINGS) {
      const encoded = percentEncode(value)
      for (const part of [
        `name="attachment"; filename*=utf-8''${encoded}\r\nContent-Type: text/plain`,
        `name*=utf-8''inline%3A${encoded}; filename="a.png"\r\nContent-Type: image/png`,
        `name="attachment"; filename="a.txt"\r\nContent-Type: text/${value.replace(/\r\n/, ' ')}`,
      ]) {
        requests.push({
          operation,
          url: url(),
          payload: Buffer.from(
            `--${BOUNDARY}\r\nContent-Disposition: form-data; name="message"\r\n\r\n${message}\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; ${part}\r\n\r\nfile\r\n--${BOUNDARY}--\r\n`,
          ),
          contentType: `multipart/form-data; boundary=${BOUNDARY}`,
          headers: { authorization: `Bearer ${adminKey}` },
        })
      }
    }
  }
  if (operation.body && operation.bodyType === 'application/json') {
    const full = complete(operation.body as never, random)
    for (const path of stringPaths(full)) {
      for (const value of CRITICAL_STRINGS) {
        requests.push({ operation, url: url(), payload: JSON.stringify(withLeaf(full, path, value)), contentType: 'application/json', headers: { authorization: `Bearer ${adminKey}` } })
      }
    }
  }
  return requests
}

/**
 * Requests generated from an OpenAPI document: `perOperation` random ones per operation with
 * hostile values in path, query, headers and body, then a sweep of every query parameter and
 * body string with the values that break SQL or headers. Deterministic for a given seed.
 */
export function restFuzzRequests(
  document: { paths: Record<string, Record<string, Record<string, unknown>>> },
  /** sender: an address that may send, so that multipart requests reach their file parts. */
  options: { adminKey: string; ids: FuzzIds; random: Random; perOperation: number; sender?: string },
): FuzzRequest[] {
  const { adminKey, ids, random } = options
  const requests: FuzzRequest[] = []
  for (const operation of operationsOf(document)) {
    for (let i = 0; i < options.perOperation; i++) {
      const url = operation.path.replace(/\{[^}]+\}/g, () => idFor(ids, operation.path, random)) + queryString(operation, random)
      requests.push({ operation, url, ...bodyFor(operation, random, options.sender), headers: headersFor(adminKey, random) })
    }
    requests.push(...sweep(operation, ids, adminKey, random, options.sender))
  }
  return requests
}
