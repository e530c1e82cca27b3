import type { AppModule } from '../module.ts'
import { auditResolvers } from './resolvers.ts'
import { auditRoutes } from './routes.ts'
import { AuditEventSchema } from './schemas.ts'

export const auditModule: AppModule = {
  name: 'audit',
  tag: { name: 'Audit', description: 'Who changed what' },
  schemas: [AuditEventSchema],
  routes: auditRoutes,
  resolvers: auditResolvers,
}
