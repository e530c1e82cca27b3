import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { jsonTextTooDeep } from '../lib/json-depth.ts'
import { MalformedBodyError } from '../lib/errors.ts'
import { MAX_JSON_DEPTH } from '../lib/text.ts'

/**
 * JSON bodies (REST and GraphQL alike) are refused before parsing when they nest deeper than
 * MAX_JSON_DEPTH: no schema of ours goes that deep, and everything that walks a value
 * afterwards (validation, GraphQL coercion, logging) stays clear of the stack limit.
 * Parsing itself is Fastify's, with its prototype-poisoning protection.
 */
async function jsonBodyPlugin(app: FastifyInstance) {
  const parse = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (jsonTextTooDeep(body as string)) {
      done(new MalformedBodyError(`The JSON body nests deeper than ${MAX_JSON_DEPTH} levels. Flatten it.`), undefined)
      return
    }
    parse(request, body as string, done)
  })
}

export default fp(jsonBodyPlugin, { name: 'json-body', fastify: '5.x', dependencies: ['errors'] })
