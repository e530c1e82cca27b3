import type { AppModule } from '../module.ts'
import { TestResultSchema } from './schemas.ts'

/** Test records and the enable gate, shared by integrations, connectors and routes. */
export const connectionTestsModule: AppModule = {
  name: 'connection-tests',
  schemas: [TestResultSchema],
}
