import multipart, { type Multipart, type MultipartFile } from '@fastify/multipart'
import { closeWhenAnswered } from '../../lib/lingering-close.ts'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { DomainError, MalformedBodyError, PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError } from '../../lib/errors.ts'
import { invalidFields } from '../../lib/validation.ts'
import { AttachmentInput, SendMessageBody, type SendMessageInput } from './schemas.ts'
import type { IncomingFile } from './service.ts'

/**
 * POST /v1/messages as multipart/form-data. The first part, `message`, is the message JSON
 * (validated like the JSON body, before any file is read); every later part is a file,
 * `attachment` or `inline:<contentId>`, handed on as a stream: nothing here holds a file.
 */
export const MESSAGE_PART = 'message'
export const ATTACHMENT_PART = 'attachment'
export const INLINE_PART_PREFIX = 'inline:'

/** The parts after `message`, left unread for the handler. */
const remainingParts = new WeakMap<FastifyRequest, AsyncIterator<Multipart>>()

/**
 * Makes the routes of `scope` (the submit route only) take multipart/form-data besides JSON,
 * and answer 415 to any other content type without reading the body.
 */
export async function acceptMultipartMessages(scope: FastifyInstance, limits: { sizeLimit: number; messagePartLimit: number }) {
  await scope.register(multipart, {
    // Every part streams, `message` included: as a field, busboy would buffer a part without a
    // filename in memory whatever its size, and the plugin would parse a JSON field itself and
    // report bad JSON only after the last file.
    isPartAFile: () => true,
    // Busboy cuts a longer part short without failing it, so this stays above both limits that
    // refuse a part here first: the message part limit and MESSAGE_SIZE_LIMIT.
    limits: { fileSize: Math.max(limits.messagePartLimit, limits.sizeLimit) + 1 },
  })
  scope.removeContentTypeParser('text/plain')
  scope.addContentTypeParser('*', (request, _payload, done) => {
    done(
      new UnsupportedMediaTypeError(
        `Send the message as application/json, or as multipart/form-data to stream large attachments; this request is ${request.headers['content-type'] ?? 'without a content type'}.`,
      ),
      undefined,
    )
  })

  scope.addHook('preValidation', async (request) => {
    if (request.isMultipart()) {
      request.body = { message: await readMessagePart(request, limits.messagePartLimit) }
    } else if (request.body === undefined) {
      throw new ValidationError([{ field: '(body)', message: 'is required: the message as JSON, or as multipart/form-data' }])
    }
  })

  // An answer given before the upload was read to its end (a refusal) closes the connection:
  // the unread rest would otherwise stall it, and reading it would waste both sides' bandwidth.
  scope.addHook('onSend', async (request, reply) => {
    if (request.isMultipart() && !request.raw.readableEnded) closeWhenAnswered(request.raw, (name, value) => reply.header(name, value))
  })
}

/** The validated message of a multipart request. */
export function multipartMessage(request: FastifyRequest): SendMessageInput {
  return (request.body as { message: SendMessageInput }).message
}

/** What a file part says of itself, held to the rules of a base64 attachment's fields. */
const FilePartFields = Type.Object({
  name: AttachmentInput.properties.name,
  contentType: AttachmentInput.properties.contentType,
  contentId: Type.Optional(AttachmentInput.properties.contentId),
})

/** The file parts after the message, in order; read each one's content to its end before the next. */
export async function* multipartFiles(request: FastifyRequest): AsyncGenerator<IncomingFile> {
  const parts = remainingParts.get(request)
  if (!parts) return
  const validate = request.compileValidationSchema(FilePartFields, 'body')
  // File parts come after the message's base64 attachments and are named as their successors.
  let position = multipartMessage(request).attachments?.length ?? 0
  for (let part = await nextPart(parts); part; part = await nextPart(parts), position++) {
    let contentId: string | undefined
    if (part.fieldname.startsWith(INLINE_PART_PREFIX)) {
      contentId = part.fieldname.slice(INLINE_PART_PREFIX.length)
    } else if (part.fieldname === MESSAGE_PART) {
      throw new ValidationError([{ field: MESSAGE_PART, message: 'must be sent once, as the first part' }])
    } else if (part.fieldname !== ATTACHMENT_PART) {
      throw new ValidationError([
        { field: part.fieldname, message: `is not a known part; name file parts "${ATTACHMENT_PART}", or "${INLINE_PART_PREFIX}<contentId>" for inline images` },
      ])
    }
    if (!part.filename) {
      throw new ValidationError([{ field: `attachments.${position}.name`, message: 'the file part needs a filename (its Content-Disposition filename)' }])
    }
    const fields = { name: part.filename, contentType: part.mimetype, ...(contentId !== undefined ? { contentId } : {}) }
    if (!validate(fields)) throw new ValidationError(invalidFields(validate.errors ?? [], `attachments.${position}`))
    yield { name: part.filename, contentType: part.mimetype, contentId, content: partContent(part) }
  }
}

async function readMessagePart(request: FastifyRequest, limit: number): Promise<SendMessageInput> {
  const parts = request.parts()
  const first = await nextPart(parts)
  if (!first) {
    throw new ValidationError([{ field: MESSAGE_PART, message: 'is required: the first part must be the message JSON, named "message"' }])
  }
  if (first.fieldname !== MESSAGE_PART) {
    throw new ValidationError([
      { field: MESSAGE_PART, message: `must be the first part, before any file; this request starts with "${first.fieldname}". Send the message part first.` },
    ])
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const data of partContent(first)) {
    size += data.length
    if (size > limit) {
      throw new PayloadTooLargeError(`The message part is larger than ${limit} bytes. Send large files as file parts after it.`, { field: MESSAGE_PART })
    }
    chunks.push(data)
  }
  let message: unknown
  try {
    message = JSON.parse(Buffer.concat(chunks, size).toString('utf8'))
  } catch (error) {
    throw new MalformedBodyError(`The message part is not valid JSON (${(error as Error).message}). Send the message JSON, as for an application/json body.`, {
      field: MESSAGE_PART,
    })
  }
  // The app's strict body validator: the JSON body's rules, and its errors named the same way.
  const validate = request.compileValidationSchema(SendMessageBody, 'body')
  if (!validate(message)) {
    throw Object.assign(new Error('The message part is not valid'), { validation: validate.errors, validationContext: 'body' })
  }
  remainingParts.set(request, parts)
  return message as SendMessageInput
}

async function nextPart(parts: AsyncIterator<Multipart>): Promise<MultipartFile | undefined> {
  try {
    const next = await parts.next()
    // isPartAFile makes every part a file.
    return next.done ? undefined : (next.value as MultipartFile)
  } catch (error) {
    throw asUploadError(error)
  }
}

async function* partContent(part: MultipartFile): AsyncGenerator<Buffer> {
  try {
    yield* part.file
  } catch (error) {
    throw asUploadError(error)
  }
}

/** Busboy and plugin failures in the domain vocabulary (a broken body is the client's, not a 500). */
function asUploadError(error: unknown): unknown {
  if (error instanceof DomainError) return error
  const { statusCode, code, message } = error as { statusCode?: number; code?: string; message?: string }
  if (statusCode === 413) return new PayloadTooLargeError(`The multipart body is too large: ${message}.`)
  if (code?.startsWith('FST_') && statusCode !== undefined && statusCode < 500) return error
  return new MalformedBodyError(`The multipart body could not be read: ${message ?? 'unknown error'}. Send a well-formed multipart/form-data body.`)
}
