import { createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { v7 as uuidv7 } from 'uuid'
import { GRANTING, KEY_COLUMNS, KEY_CTE, keyHashOf, problem, refused, type KeyColumns } from './auth.ts'
import type { LeanSql } from './db.ts'

/*
 * POST /v1/messages with a JSON body and no attachments, in ONE statement: authenticate the
 * key, find the sending address (an outgoing route, default or alias, whose route and
 * connector are both enabled), claim the Idempotency-Key if one was sent, and insert the
 * queued message. The checks gate the inserts inside the statement, so it is atomic without
 * an explicit transaction; the row that comes back says which check failed, if any. (Once a
 * minute the key's last_used_at takes a second statement, as in Mailgate.)
 *
 * The integration's granted permissions decide only how attachments may be sent; the
 * prototype takes no attachments, so it does not read them.
 */

// As src/lib/text.ts: one-line text and multi-line text, without control characters.
const NOT_TEXT = '\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069\\uD800-\\uDFFF'
const NOT_MULTILINE_TEXT = '\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\uD800-\\uDFFF'
const text = (options: object = {}) => ({ type: 'string', pattern: `^[^${NOT_TEXT}]*$`, ...options })
const email = { type: 'string', format: 'email', maxLength: 320 }
const recipients = { type: 'array', items: email, maxItems: 500 }

/** The JSON body Mailgate accepts, less attachments (the lean prototype refuses them). */
const bodySchema = {
  type: 'object',
  required: ['from', 'subject', 'body'],
  additionalProperties: false,
  properties: {
    from: email,
    to: recipients,
    cc: recipients,
    bcc: recipients,
    replyTo: { type: 'array', items: email, maxItems: 10 },
    subject: text({ maxLength: 2000 }),
    body: {
      type: 'object',
      required: ['contentType', 'content'],
      additionalProperties: false,
      properties: {
        contentType: { enum: ['text', 'html'] },
        content: { type: 'string', pattern: `^[^${NOT_MULTILINE_TEXT}]*$` },
      },
    },
    headers: { type: 'object', propertyNames: { pattern: '^[Xx]-[A-Za-z0-9-]{1,100}$' }, additionalProperties: text({ maxLength: 1000 }) },
    importance: { enum: ['low', 'normal', 'high'] },
    workItemRef: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
  },
}

const headersSchema = { type: 'object', properties: { 'idempotency-key': text({ minLength: 1, maxLength: 255 }) } }

interface SubmitBody {
  from: string
  to?: string[]
  cc?: string[]
  bcc?: string[]
  replyTo?: string[]
  subject: string
  body: { contentType: 'text' | 'html'; content: string }
  headers?: Record<string, string>
  importance?: 'low' | 'normal' | 'high'
  workItemRef?: string
}

interface SubmitRow extends KeyColumns {
  routeId: string | null
  senderEnabled: boolean | null
  connectorEnabled: boolean | null
  messageId: string | null
  createdAt: Date | null
}

const SIZE_LIMIT = 35 * 1024 * 1024
const WORK_ITEM_HEADER = 'x-mailgate-work-item'

const SENDER_CTE = `
  sender as (
    select r.id as route_id, r.connector_id, r.enabled and c.enabled as enabled, c.enabled as connector_enabled
    from email_routes r join connectors c on c.id = r.connector_id
    where r.direction = 'outgoing' and r.email_address = $2
  )`

/** Key valid, scope granted, sender enabled: what both inserts require. */
const ALLOWED = `key.revoked_at is null and key.scopes && $15::text[] and sender.enabled`

const INSERT_MESSAGE = (from: string, condition: string) => `
  message as (
    insert into outbound_messages (id, status, connector_id, route_id, from_address, to_addresses, cc_addresses, bcc_addresses,
      reply_to, subject, body_type, body, headers, importance, work_item_ref, total_bytes, attachment_count, created_by_key_id)
    select $3::uuid, 'queued', sender.connector_id, sender.route_id, $2::text, $4::text[], $5::text[], $6::text[],
      $7::text[], $8::text, $9::text, $10::text, $11::text::jsonb, $12::text, $13::text, $14::int, 0, key.id
    from ${from}
    where ${condition}
    returning id, created_at
  )`

const RESULT = `
  select ${KEY_COLUMNS}, sender.route_id as "routeId", sender.enabled as "senderEnabled",
    sender.connector_enabled as "connectorEnabled", message.id as "messageId", message.created_at as "createdAt"
  from key left join sender on true left join message on true`

const SUBMIT = `with ${KEY_CTE}, ${SENDER_CTE}, ${INSERT_MESSAGE('key, sender', ALLOWED)} ${RESULT}`

/**
 * With an Idempotency-Key the claim is an upsert that only replaces a row older than 24 hours;
 * it stores the final answer at once (the message id is made here, its created_at is the
 * statement's now()), and the message is inserted only if the claim was made.
 */
const SUBMIT_IDEMPOTENT = `with ${KEY_CTE}, ${SENDER_CTE},
  claim as (
    insert into idempotency_keys (api_key_id, key, request_hash, response_status, response_body)
    select key.id, $16::text, $17::text, 202, jsonb_build_object('id', $3::uuid, 'status', 'queued',
      'createdAt', to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
    from key, sender
    where ${ALLOWED}
    on conflict (api_key_id, key) do update
      set request_hash = excluded.request_hash, response_status = excluded.response_status,
        response_body = excluded.response_body, created_at = excluded.created_at
      where idempotency_keys.created_at < now() - interval '24 hours'
    returning 1
  ),
  ${INSERT_MESSAGE('key, sender, claim', 'true')} ${RESULT}`

/** Only when the key was taken by an earlier request (rare): what it stored. */
const EARLIER_ANSWER = `
  select request_hash as "requestHash", response_body as "responseBody" from idempotency_keys
  where api_key_id = $1 and key = $2 and created_at > now() - interval '24 hours'`

/** Key order does not change what a request means (as Mailgate hashes it). */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`)
    return `{${entries.join(',')}}`
  }
  return JSON.stringify(value)
}

function plusAddress(address: string, reference: string): string {
  const at = address.lastIndexOf('@')
  return `${address.slice(0, at)}+${reference}${address.slice(at)}`
}

export function submitRoute(app: FastifyInstance, sql: LeanSql) {
  app.post('/v1/messages', { schema: { body: bodySchema, headers: headersSchema } }, async (request, reply) => {
    const keyHash = keyHashOf(request.headers.authorization)
    if (!keyHash) return problem(reply, 401, 'Unauthenticated', 'Send an API key as `Authorization: Bearer <key>`.')
    const input = request.body as SubmitBody
    const from = input.from.toLowerCase()
    const lower = (list: string[] | undefined) => (list ?? []).map((address) => address.toLowerCase())
    const [to, cc, bcc] = [lower(input.to), lower(input.cc), lower(input.bcc)]
    const recipients = to.length + cc.length + bcc.length
    if (recipients === 0 || recipients > 500) return problem(reply, 400, 'Validation failed', 'give 1 to 500 recipients in to, cc and bcc')
    const totalBytes = Buffer.byteLength(input.subject) + Buffer.byteLength(input.body.content)
    if (totalBytes > SIZE_LIMIT) return problem(reply, 413, 'Payload too large', 'The message is larger than MESSAGE_SIZE_LIMIT.')
    const headers = { ...input.headers }
    let replyTo = lower(input.replyTo)
    if (input.workItemRef) {
      headers[WORK_ITEM_HEADER] = input.workItemRef
      if (replyTo.length === 0) replyTo = [plusAddress(from, input.workItemRef)]
    }
    const idempotencyKey = request.headers['idempotency-key'] as string | undefined
    const params: unknown[] = [
      keyHash, from, uuidv7(), to, cc, bcc, replyTo, input.subject, input.body.contentType, input.body.content,
      JSON.stringify(headers), input.importance ?? 'normal', input.workItemRef ?? null, totalBytes, GRANTING['mail:send'],
    ]
    if (idempotencyKey) params.push(idempotencyKey, createHash('sha256').update(canonicalJson(input)).digest('hex'))

    const [row] = await sql.query<SubmitRow>(idempotencyKey ? SUBMIT_IDEMPOTENT : SUBMIT, params)
    if (await refused(sql, reply, row, 'mail:send')) return reply
    if (!row!.routeId || !row!.senderEnabled) {
      const why = !row!.routeId ? 'no outgoing connector or alias has this address' : !row!.connectorEnabled ? 'its connector is disabled' : 'the alias is not enabled'
      return problem(reply, 422, 'Sender not allowed', `Mailgate cannot send from ${from}: ${why}.`)
    }
    if (row!.messageId) {
      const body = { id: row!.messageId, status: 'queued', createdAt: row!.createdAt!.toISOString() }
      return reply.code(202).header('location', `/v1/messages/${body.id}`).send(body)
    }
    // The claim found a fresh answer under this key: replay it, or refuse another body.
    const [earlier] = await sql.query<{ requestHash: string; responseBody: { id: string } }>(EARLIER_ANSWER, [row!.keyId, idempotencyKey])
    if (!earlier) return problem(reply, 409, 'Conflict', 'The Idempotency-Key is being used by a request that just failed; retry.')
    if (earlier.requestHash !== params[16]) return problem(reply, 409, 'Idempotency key reused', 'This Idempotency-Key was used with a different body.')
    return reply.code(202).header('idempotent-replayed', 'true').header('location', `/v1/messages/${earlier.responseBody.id}`).send(earlier.responseBody)
  })
}
