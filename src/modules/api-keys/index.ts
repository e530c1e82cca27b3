import type { AppModule } from '../module.ts'
import { apiKeyResolvers } from './resolvers.ts'
import { apiKeyRoutes } from './routes.ts'
import { ApiKeySchema, CreatedApiKeySchema } from './schemas.ts'

export const apiKeysModule: AppModule = {
  name: 'api-keys',
  tag: { name: 'API keys', description: 'Keys and their scopes (admin)' },
  schemas: [ApiKeySchema, CreatedApiKeySchema],
  routes: apiKeyRoutes,
  resolvers: apiKeyResolvers,
}
