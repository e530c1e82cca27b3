import type { Context, Middleware, MiddlewareOptions } from '@microsoft/microsoft-graph-client'
import { microsoftFetch } from './transport.ts'

/**
 * The Graph SDK's middleware chain, ours end to end: the bearer token goes to the configured
 * Graph origin and nowhere else (the SDK's own handler attaches it only to hosts on its list,
 * so a proxy or stand-in host got none), and the request leaves through microsoftFetch. The
 * SDK flattens whatever a middleware throws into a GraphError with status -1; CallState keeps
 * the original for the call that made the request.
 */

/** Per-call record of why a request never got an answer (token or transport). */
export class CallState implements MiddlewareOptions {
  failure: unknown = undefined
}

function recordFailure(context: Context, error: unknown): void {
  const state = context.middlewareControl?.getMiddlewareOptions(CallState) as CallState | undefined
  if (state) state.failure = error
}

export class BearerToken implements Middleware {
  private next: Middleware | undefined
  private readonly origin: string
  private readonly token: () => Promise<string>

  constructor(origin: string, token: () => Promise<string>) {
    this.origin = new URL(origin).origin
    this.token = token
  }

  async execute(context: Context): Promise<void> {
    const url = typeof context.request === 'string' ? context.request : context.request.url
    const headers = (context.options ??= {}).headers as Record<string, string> | undefined
    if (new URL(url).origin === this.origin) {
      let token: string
      try {
        token = await this.token()
      } catch (error) {
        recordFailure(context, error)
        throw error
      }
      context.options.headers = { ...headers, Authorization: `Bearer ${token}` }
    } else if (headers) {
      delete headers.Authorization
    }
    await this.next!.execute(context)
  }

  setNext(next: Middleware): void {
    this.next = next
  }
}

export class Transport implements Middleware {
  async execute(context: Context): Promise<void> {
    try {
      context.response = await microsoftFetch(context.request as string | Request, context.options as RequestInit)
    } catch (error) {
      recordFailure(context, error)
      throw error
    }
  }
}
