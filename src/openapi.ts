import type { App } from './app.ts'

/** The OpenAPI document as committed in openapi/openapi.json: stable key order, 2-space indent. */
export function renderOpenApi(app: App): string {
  return JSON.stringify(app.swagger(), null, 2) + '\n'
}
