import type { IResolvers, MercuriusContext } from 'mercurius'
import { deepWithoutNulls, validateInput, withoutNulls } from '../../lib/graphql.ts'
import { IdParams } from '../../lib/schemas.ts'
import { ConnectionChanges, CreateIntegrationBody, ListIntegrationsQuery, UpdateIntegrationBody } from './schemas.ts'


export const integrationResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    integrations: async (_root, args, context) =>
      context.app.services.integrations.list(validateInput(ListIntegrationsQuery, withoutNulls(args))),
    integration: async (_root, args, context) =>
      context.app.services.integrations.get(validateInput(IdParams, args).id),
  },
  Mutation: {
    createIntegration: async (_root, { input }, context) =>
      context.app.services.integrations.create(
        context.reply.request.actor(),
        validateInput(CreateIntegrationBody, deepWithoutNulls(input)),
      ),
    updateIntegration: async (_root, { id, input }, context) =>
      context.app.services.integrations.update(
        context.reply.request.actor(),
        validateInput(IdParams, { id }).id,
        validateInput(UpdateIntegrationBody, deepWithoutNulls(input)),
      ),
    deleteIntegration: async (_root, args, context) => {
      await context.app.services.integrations.delete(context.reply.request.actor(), validateInput(IdParams, args).id)
      return true
    },
    testIntegration: async (_root, { id, candidate }, context) =>
      context.app.services.integrations.test(
        context.reply.request.actor(),
        validateInput(IdParams, { id }).id,
        validateInput(ConnectionChanges, deepWithoutNulls(candidate ?? {})),
      ),
  },
}
