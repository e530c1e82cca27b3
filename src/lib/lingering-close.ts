import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'

/** How long a refused upload's connection stays open for its client to read the answer. */
const LINGER_MS = 2_000

/**
 * Answers a request whose body was not read to its end with `Connection: close`, and closes
 * the connection only once the client has stopped sending (or after LINGER_MS), reading and
 * dropping what it still sends meanwhile. Node would close at once, with the unread upload in
 * the socket: the kernel then resets the connection, and a client still sending may lose the
 * answer it was already given (the "lingering close" of HTTP servers).
 */
export function closeWhenAnswered(request: IncomingMessage, setHeader: (name: string, value: string) => void): void {
  setHeader('connection', 'close')
  const socket = request.socket as Socket & { destroySoon?: () => void }
  socket.destroySoon = function lingeringClose(this: Socket) {
    if (this.writable) this.end()
    const timer = setTimeout(() => this.destroy(), LINGER_MS)
    timer.unref()
    this.once('close', () => clearTimeout(timer))
    this.once('end', () => this.destroy())
    request.resume()
    this.resume()
  }
}
