import type { IResolvers, MercuriusContext, MercuriusLoaders } from 'mercurius'
import { deepWithoutNulls, withoutNulls } from '../../lib/graphql.ts'
import { IdParams } from '../../lib/schemas.ts'
import { CreateConnectorBody, DisableConnectorBody, EnableConnectorBody, ListConnectorsQuery, TestConnectorBody, UpdateConnectorBody } from './schemas.ts'

export const connectorResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    connectors: async (_root, args, context) =>
      context.app.services.connectors.list(context.app.inputs.validate(ListConnectorsQuery, withoutNulls(args))),
    connector: async (_root, args, context) => context.app.services.connectors.get(context.app.inputs.validate(IdParams, args).id),
  },
  Mutation: {
    createConnector: async (_root, { input }, context) =>
      context.app.services.connectors.create(context.reply.request.actor(), context.app.inputs.validate(CreateConnectorBody, deepWithoutNulls(input))),
    updateConnector: async (_root, { id, input }, context) =>
      context.app.services.connectors.update(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id }).id,
        context.app.inputs.validate(UpdateConnectorBody, deepWithoutNulls(input)),
      ),
    deleteConnector: async (_root, args, context) => {
      await context.app.services.connectors.delete(context.reply.request.actor(), context.app.inputs.validate(IdParams, args).id)
      return true
    },
    testConnector: async (_root, { id, candidate }, context) =>
      context.app.services.connectors.test(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id }).id,
        context.app.inputs.validate(TestConnectorBody, deepWithoutNulls(candidate ?? {})),
      ),
    enableConnector: async (_root, { id, importExisting, importSince }, context) =>
      context.app.services.connectors.enable(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id }).id,
        context.app.inputs.validate(EnableConnectorBody, withoutNulls({ importExisting, importSince })),
      ),
    disableConnector: async (_root, { id, reason }, context) =>
      context.app.services.connectors.disable(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id }).id,
        context.app.inputs.validate(DisableConnectorBody, withoutNulls({ reason })).reason,
      ),
  },
}

type ConnectorQuery = { obj: { id: string; integrationId: string } }

/**
 * A page's connectors get their integrations and routes in one call each: Mercurius gathers
 * every parent of the field in a request and hands them over together.
 */
export const connectorLoaders: MercuriusLoaders = {
  Connector: {
    async integration(queries: ConnectorQuery[], context: MercuriusContext) {
      const integrations = await context.app.services.integrations.getMany([...new Set(queries.map(({ obj }) => obj.integrationId))])
      const byId = new Map(integrations.map((integration) => [integration.id, integration]))
      return queries.map(({ obj }) => byId.get(obj.integrationId) ?? null)
    },
    async routes(queries: ConnectorQuery[], context: MercuriusContext) {
      const routes = await context.app.services.routes.listOf(queries.map(({ obj }) => obj.id))
      return queries.map(({ obj }) => routes.get(obj.id) ?? [])
    },
  },
}
