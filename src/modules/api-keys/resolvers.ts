import type { IResolvers, MercuriusContext } from 'mercurius'
import { withoutNulls } from '../../lib/graphql.ts'
import { scopeFromEnum, scopeToEnum } from './scopes.ts'
import { IdParams } from '../../lib/schemas.ts'
import { CreateApiKeyBody, ListApiKeysQuery, type ApiKey } from './schemas.ts'

function present(apiKey: ApiKey) {
  return { ...apiKey, scopes: apiKey.scopes.map(scopeToEnum) }
}

export const apiKeyResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    viewer: (_root, _args, context) => {
      const principal = context.reply.request.principal!
      return { keyId: principal.keyId, name: principal.name, scopes: principal.scopes.map(scopeToEnum) }
    },
    apiKeys: async (_root, args, context) => {
      const query = context.app.inputs.validate(ListApiKeysQuery, withoutNulls(args))
      const page = await context.app.services.apiKeys.list(query)
      return { ...page, items: page.items.map(present) }
    },
    apiKey: async (_root, args, context) => {
      const { id } = context.app.inputs.validate(IdParams, args)
      return present(await context.app.services.apiKeys.get(id))
    },
  },
  Mutation: {
    createApiKey: async (_root, { input }, context) => {
      const body = context.app.inputs.validate(
        CreateApiKeyBody,
        { ...input, scopes: (input.scopes as string[]).map(scopeFromEnum) },
      )
      const { apiKey, key } = await context.app.services.apiKeys.create(context.reply.request.actor(), body)
      return { apiKey: present(apiKey), key }
    },
    revokeApiKey: async (_root, args, context) => {
      const { id } = context.app.inputs.validate(IdParams, args)
      await context.app.services.apiKeys.revoke(context.reply.request.actor(), id)
      return true
    },
  },
}
