import type { IResolvers, MercuriusContext } from 'mercurius'
import { deepWithoutNulls, validateInput, withoutNulls } from '../../lib/graphql.ts'
import { IdParams } from '../../lib/schemas.ts'
import { CreateConnectorBody, DisableConnectorBody, ListConnectorsQuery, TestConnectorBody, UpdateConnectorBody } from './schemas.ts'

export const connectorResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    connectors: async (_root, args, context) =>
      context.app.services.connectors.list(validateInput(ListConnectorsQuery, withoutNulls(args))),
    connector: async (_root, args, context) => context.app.services.connectors.get(validateInput(IdParams, args).id),
  },
  Mutation: {
    createConnector: async (_root, { input }, context) =>
      context.app.services.connectors.create(context.reply.request.actor(), validateInput(CreateConnectorBody, deepWithoutNulls(input))),
    updateConnector: async (_root, { id, input }, context) =>
      context.app.services.connectors.update(
        context.reply.request.actor(),
        validateInput(IdParams, { id }).id,
        validateInput(UpdateConnectorBody, deepWithoutNulls(input)),
      ),
    deleteConnector: async (_root, args, context) => {
      await context.app.services.connectors.delete(context.reply.request.actor(), validateInput(IdParams, args).id)
      return true
    },
    testConnector: async (_root, { id, candidate }, context) =>
      context.app.services.connectors.test(
        context.reply.request.actor(),
        validateInput(IdParams, { id }).id,
        validateInput(TestConnectorBody, deepWithoutNulls(candidate ?? {})),
      ),
    enableConnector: async (_root, args, context) =>
      context.app.services.connectors.enable(context.reply.request.actor(), validateInput(IdParams, args).id),
    disableConnector: async (_root, { id, reason }, context) =>
      context.app.services.connectors.disable(
        context.reply.request.actor(),
        validateInput(IdParams, { id }).id,
        validateInput(DisableConnectorBody, withoutNulls({ reason })).reason,
      ),
  },
}
