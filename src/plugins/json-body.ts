import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { jsonTextTooDeep } from '../lib/json-depth.ts'
import { MalformedBodyError, UnsupportedMediaTypeError } from '../lib/errors.ts'
import { MAX_JSON_DEPTH } from '../lib/text.ts'

/**
 * JSON bodies (REST and GraphQL alike) are refused before parsing when they nest deeper than
 * MAX_JSON_DEPTH: no schema of ours goes that deep, and everything that walks a value
 * afterwards (validation, GraphQL coercion, logging) stays clear of the stack limit.
 * Parsing itself is Fastify's, with its prototype-poisoning protection. Only UTF-8 is taken.
 */
async function jsonBodyPlugin(app: FastifyInstance) {
  const parse = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    // The body is read as UTF-8; another declared charset would be silently mangled.
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(request.headers['content-type'] ?? '')?.[1]?.toLowerCase()
    if (charset && charset !== 'utf-8' && charset !== 'utf8') {
      done(new UnsupportedMediaTypeError(`JSON is read as UTF-8; this body declares charset=${charset.slice(0, 40)}. Send it as UTF-8.`), undefined)
      return
    }
    if (jsonTextTooDeep(body as string)) {
      done(new MalformedBodyError(`The JSON body nests deeper than ${MAX_JSON_DEPTH} levels. Flatten it.`), undefined)
      return
    }
    parse(request, body as string, done)
  })
}

export default fp(jsonBodyPlugin, { name: 'json-body', fastify: '5.x', dependencies: ['errors'] })
